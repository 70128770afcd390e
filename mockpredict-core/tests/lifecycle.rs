//! Property test of the lifecycle: under random interleavings of submit, cancel,
//! completion (virtual time passing), deadlines and shutdown, no status ever moves
//! backwards and every admitted prediction ends in exactly one terminal status.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Action, Script, Scripted};
use mockpredict_core::store::Finished;
use mockpredict_core::{Error, JobQueue, Observer, PredictionId, QueueConfig, Status};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Submit(u64, Action),
    Cancel(usize),
    Advance(u64),
    Shutdown(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..3_000, prop_oneof![6 => Just(Action::Answer), 1 => Just(Action::Fail), 1 => Just(Action::Panic)])
            .prop_map(|(ms, a)| Op::Submit(ms, a)),
        2 => (0usize..64).prop_map(Op::Cancel),
        3 => (0u64..2_000).prop_map(Op::Advance),
        1 => (0u64..2_000).prop_map(Op::Shutdown),
    ]
}

#[derive(Clone, Default)]
struct Terminals(Arc<Mutex<Vec<Finished>>>);

impl Observer for Terminals {
    fn on_finish(&self, f: &Finished) {
        self.0.lock().expect("not poisoned").push(*f);
    }
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Queued => 0,
        Status::Processing => 1,
        _ => 2,
    }
}

fn check(ops: Vec<Op>, capacity: usize, concurrency: usize, deadline: Option<u64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let terminals = Terminals::default();
        let config = QueueConfig::default()
            .capacity(capacity)
            .concurrency(concurrency)
            .deadline(deadline.map(Duration::from_millis));
        let queue = JobQueue::builder(Scripted::default())
            .config(config)
            .observer(terminals.clone())
            .build()
            .expect("valid");
        let mut ids: Vec<PredictionId> = Vec::new();
        let mut seen: HashMap<PredictionId, Status> = HashMap::new();
        let mut subs = Vec::new();
        let mut shutdown = None;
        for op in ops {
            match op {
                Op::Submit(ms, action) => {
                    match queue
                        .submit(Script {
                            latency: Duration::from_millis(ms),
                            action,
                        })
                        .await
                    {
                        Ok(id) => {
                            ids.push(id);
                            let mut sub = queue.subscribe(id).await.expect("just admitted");
                            subs.push(tokio::spawn(async move {
                                let mut statuses = Vec::new();
                                while let Some(p) = sub.next().await {
                                    statuses.push(p.status);
                                }
                                statuses
                            }));
                        }
                        Err(Error::QueueFull { .. } | Error::ShuttingDown) => {}
                        Err(e) => panic!("unexpected submit error {e}"),
                    }
                }
                Op::Cancel(i) if !ids.is_empty() => {
                    let id = ids[i % ids.len()];
                    let p = queue.cancel(id).await.expect("retained");
                    assert!(p.status.is_terminal(), "cancel left {id} {}", p.status);
                }
                Op::Cancel(_) => {}
                Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Op::Shutdown(grace) if shutdown.is_none() => {
                    let q = queue.clone();
                    shutdown = Some(tokio::spawn(async move {
                        q.shutdown(Duration::from_millis(grace)).await
                    }));
                }
                Op::Shutdown(_) => {}
            }
            for id in &ids {
                let now = queue.get(*id).await.expect("retained").status;
                if let Some(before) = seen.insert(*id, now) {
                    assert!(rank(before) <= rank(now), "{id} went {before} -> {now}");
                    if before.is_terminal() {
                        assert_eq!(before, now, "{id} changed terminal status");
                    }
                }
            }
        }
        let report = match shutdown {
            Some(h) => h.await.expect("shutdown task"),
            None => queue.shutdown(Duration::from_secs(1)).await,
        };
        let _ = report;
        for id in &ids {
            assert!(
                queue.get(*id).await.expect("retained").status.is_terminal(),
                "{id} unfinished"
            );
        }
        for sub in subs {
            let statuses = sub.await.expect("subscriber");
            assert!(
                statuses.windows(2).all(|w| rank(w[0]) < rank(w[1])),
                "{statuses:?}"
            );
            assert!(
                statuses.last().is_some_and(|s| s.is_terminal()),
                "{statuses:?}"
            );
            assert_eq!(statuses.iter().filter(|s| s.is_terminal()).count(), 1);
        }
        let terminals = terminals.0.lock().expect("not poisoned").clone();
        assert_eq!(
            terminals.len(),
            ids.len(),
            "one terminal transition per admitted prediction"
        );
        let mut per_id: HashMap<PredictionId, usize> = HashMap::new();
        for f in &terminals {
            *per_id.entry(f.id).or_default() += 1;
            assert!(!f.previous.is_terminal());
            assert!(f.status.is_terminal());
        }
        assert!(per_id.values().all(|n| *n == 1));
        let stats = queue.stats().await;
        assert_eq!(
            stats.succeeded_total + stats.failed_total + stats.canceled_total,
            stats.submitted_total
        );
        assert_eq!(stats.submitted_total, ids.len() as u64);
        assert_eq!((stats.queued, stats.processing), (0, 0));
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn statuses_only_move_forward_and_end_exactly_once(
        ops in prop::collection::vec(op(), 1..60),
        capacity in 1usize..12,
        concurrency in 1usize..4,
        deadline in prop::option::of(100u64..4_000),
    ) {
        check(ops, capacity, concurrency, deadline);
    }
}
