//! The behavioural suite on [`MemoryStore`], and what only the in-memory store does
//! (its byte budget).

mod common;

use mockpredict_core::store::MemoryStore;

type TheStore = MemoryStore<Script, u64>;

fn make_store(config: &QueueConfig) -> TheStore {
    MemoryStore::new(config.result_ttl, config.max_retained)
}

include!("store_suite/behaviour.rs");

/// Admits, claims and finishes one prediction of input `ms` (the weight the weigher
/// below gives it), succeeded with output `ms` or canceled; returns its ID.
async fn run_one(store: &MemoryStore<Script, u64>, ms: u64, succeed: bool) -> PredictionId {
    let id = PredictionId::new_v4();
    assert!(store.admit(id, Script::ok(ms), 100).await.expect("store"));
    let claimed = store.claim().await.expect("store").expect("queued");
    assert_eq!(claimed.id, id);
    let outcome = if succeed {
        Outcome::Succeeded(ms)
    } else {
        Outcome::Canceled
    };
    store
        .finish(id, outcome)
        .await
        .expect("store")
        .expect("applied");
    id
}

async fn kept(store: &MemoryStore<Script, u64>, id: PredictionId) -> bool {
    store.read(id).await.expect("store").is_some()
}

async fn retained(store: &MemoryStore<Script, u64>) -> (usize, u64) {
    let counts = store.counts().await.expect("store");
    (counts.retained, counts.retained_bytes)
}

/// Input and output weigh their milliseconds each, so a canceled one (no output)
/// weighs half a succeeded one.
fn weigh(input: &Script, output: Option<&u64>) -> usize {
    (input.latency.as_millis() as u64 + output.copied().unwrap_or(0)) as usize
}

/// Over the byte budget the oldest go, one or several, until the rest fit; the newest
/// stays even when it alone is over; the count cap still applies; expiry takes the
/// weights off too.
#[tokio::test(start_paused = true)]
async fn a_byte_budget_evicts_the_oldest_until_the_rest_fit() {
    let store = MemoryStore::new(60 * S, 4).with_max_bytes(100, weigh);
    let a = run_one(&store, 20, true).await; // 40
    let b = run_one(&store, 20, true).await; // 40
    assert_eq!(retained(&store).await, (2, 80));
    let c = run_one(&store, 15, false).await; // 15: canceled, no output
    assert_eq!(retained(&store).await, (3, 95));
    let d = run_one(&store, 10, true).await; // 20: 115 > 100, `a` goes
    assert_eq!(retained(&store).await, (3, 75));
    assert!(!kept(&store, a).await);
    assert!(kept(&store, b).await && kept(&store, c).await && kept(&store, d).await);
    // One heavier than the whole budget evicts all the others, and stays.
    let heavy = run_one(&store, 100, true).await; // 200
    assert_eq!(retained(&store).await, (1, 200));
    assert!(kept(&store, heavy).await);
    // Until the next finishes.
    let e = run_one(&store, 1, true).await; // 2
    assert_eq!(retained(&store).await, (1, 2));
    assert!(!kept(&store, heavy).await && kept(&store, e).await);
    // The count cap (4) still holds with light ones.
    for _ in 0..5 {
        run_one(&store, 0, true).await;
    }
    assert_eq!(retained(&store).await, (4, 0));
    // Expiry takes the weights off with the records.
    run_one(&store, 5, true).await;
    assert_eq!(retained(&store).await, (4, 10));
    tokio::time::advance(61 * S).await;
    store.purge_expired().await.expect("store");
    assert_eq!(retained(&store).await, (0, 0));
}

/// Without a budget nothing is weighed: the count cap alone applies.
#[tokio::test(start_paused = true)]
async fn without_a_budget_only_the_count_applies() {
    let store = MemoryStore::new(60 * S, 2);
    let first = run_one(&store, 1_000_000, true).await;
    run_one(&store, 1_000_000, true).await;
    assert_eq!(retained(&store).await, (2, 0));
    assert!(kept(&store, first).await);
    run_one(&store, 1, true).await;
    assert!(!kept(&store, first).await);
}

/// Predictions canceled while queued wait in the pending list for a claim; when
/// clients cancel faster than workers claim, the list is compacted instead of growing
/// without bound, and what is still queued keeps its order.
#[tokio::test(start_paused = true)]
async fn predictions_canceled_while_queued_do_not_pile_up() {
    let store = MemoryStore::<Script, u64>::new(60 * S, 10);
    let first = PredictionId::new_v4();
    assert!(store.admit(first, Script::ok(1), 10).await.expect("store"));
    for _ in 0..100_000 {
        let id = PredictionId::new_v4();
        assert!(store.admit(id, Script::ok(1), 10).await.expect("store"));
        store.finish(id, Outcome::Canceled).await.expect("store");
    }
    let last = PredictionId::new_v4();
    assert!(store.admit(last, Script::ok(1), 10).await.expect("store"));
    let debug = format!("{store:?}");
    let pending: usize = debug
        .split("pending: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pending length in {debug}"));
    assert!(
        pending <= 1026,
        "{pending} entries pending after 100,000 cancels"
    );
    assert_eq!(
        store.claim().await.expect("store").map(|c| c.id),
        Some(first)
    );
    assert_eq!(
        store.claim().await.expect("store").map(|c| c.id),
        Some(last)
    );
    assert!(store.claim().await.expect("store").is_none());
}
