//! The mock model: the original's defaults, seeded determinism, failure injection.

use std::time::Duration;

use mockpredict_core::{
    FailureKind, JobQueue, MockConfigError, MockModel, Model, PredictContext, QueueConfig, Status,
};

#[test]
fn the_same_seed_and_input_give_the_same_result_and_latency() {
    let a = MockModel::new().with_seed(42);
    let b = MockModel::new().with_seed(42);
    for input in ["hello", "", "a longer input with unicode ✓"] {
        assert_eq!(a.draw(input), b.draw(input), "{input:?}");
    }
}

#[test]
fn seeded_results_are_pinned_across_releases() {
    // These values are the seeded contract: changing them breaks users' fixtures.
    let d = MockModel::new().with_seed(42).draw("hello");
    assert_eq!(
        (d.result, d.latency.as_millis(), d.fails),
        (PINNED_RESULT, PINNED_LATENCY_MS, false)
    );
}

const PINNED_RESULT: u32 = 7948;
const PINNED_LATENCY_MS: u128 = 9224;

#[test]
fn different_inputs_and_seeds_give_different_draws() {
    let m = MockModel::new().with_seed(42);
    let results: std::collections::HashSet<u32> = (0..100)
        .map(|i| m.draw(&format!("input {i}")).result)
        .collect();
    assert!(
        results.len() > 90,
        "only {} distinct results",
        results.len()
    );
    let other = MockModel::new().with_seed(43);
    let differing = (0..100)
        .filter(|i| m.draw(&i.to_string()) != other.draw(&i.to_string()))
        .count();
    assert!(differing > 90);
}

#[test]
fn unseeded_draws_vary() {
    let m = MockModel::new();
    let results: std::collections::HashSet<u32> = (0..100).map(|_| m.draw("same").result).collect();
    assert!(results.len() > 90);
}

#[test]
fn results_cover_the_original_range() {
    let m = MockModel::new().with_seed(1);
    let rs: Vec<u32> = (0..20_000).map(|i| m.draw(&i.to_string()).result).collect();
    assert!(rs.iter().all(|r| (100..=10_000).contains(r)));
    assert!(rs.iter().any(|r| *r < 200) && rs.iter().any(|r| *r > 9_900));
}

#[test]
fn failure_rate_must_be_a_share() {
    for bad in [-0.1, 1.5, f64::NAN] {
        assert!(matches!(
            MockModel::new().with_failure_rate(bad),
            Err(MockConfigError::FailureRate(_))
        ));
    }
    assert!(MockModel::new().with_failure_rate(0.0).is_ok());
    assert!(MockModel::new().with_failure_rate(1.0).is_ok());
}

#[test]
fn failure_rate_fails_about_that_share() {
    let m = MockModel::new()
        .with_seed(3)
        .with_failure_rate(0.3)
        .expect("valid");
    let fails = (0..10_000).filter(|i| m.draw(&i.to_string()).fails).count();
    assert!((2_700..3_300).contains(&fails), "{fails} of 10000");
}

#[tokio::test(start_paused = true)]
async fn injected_failures_end_failed_after_the_latency() {
    let m = MockModel::new()
        .with_latency("2s".parse().expect("valid"))
        .with_failure_rate(1.0)
        .expect("valid");
    let queue = JobQueue::new(m, QueueConfig::default()).expect("valid");
    let p = queue.predict("x".into()).await.expect("admitted");
    assert_eq!(p.status, Status::Failed);
    assert_eq!(p.error.expect("error").kind, FailureKind::Model);
    assert_eq!(p.predict_time, Some(Duration::from_secs(2)));
}

#[tokio::test(start_paused = true)]
async fn the_seeded_latency_is_the_latency_the_queue_sees() {
    let m = MockModel::new().with_seed(9);
    let expected = m.draw("abc");
    let queue = JobQueue::new(m, QueueConfig::default()).expect("valid");
    let p = queue.predict("abc".into()).await.expect("admitted");
    // Tokio timers have millisecond granularity: the sleep ends on the next tick.
    let took = p.predict_time.expect("ran");
    assert!(
        took >= expected.latency && took <= expected.latency + Duration::from_millis(1),
        "{took:?}"
    );
    assert_eq!(
        p.output.expect("succeeded").result,
        expected.result.to_string()
    );
}

#[test]
fn the_model_reports_its_metadata() {
    let m = MockModel::new();
    assert_eq!(m.name(), "mock");
    assert!(!m.version().is_empty());
}

#[tokio::test]
async fn a_zero_latency_answers_without_waiting_for_a_timer_tick() {
    // On the real clock: a zero sleep would wait for the timer wheel's next 1 ms tick.
    let m = MockModel::new().with_latency("0s".parse().expect("valid"));
    let input = "now".to_owned();
    let ctx = PredictContext::standalone(input.clone());
    let answer = std::pin::pin!(m.predict(&input, &ctx));
    let polled = futures_util::FutureExt::now_or_never(answer);
    assert!(polled.is_some(), "ready on the first poll");
}

#[test]
fn a_seeded_result_does_not_depend_on_the_latency_distribution() {
    let inputs = ["hello", "world", "42"];
    let results = |latency: &str| -> Vec<u32> {
        let m = MockModel::new()
            .with_seed(42)
            .with_latency(latency.parse().expect("valid"));
        inputs.iter().map(|i| m.draw(i).result).collect()
    };
    let reference = results("8s..15s");
    for latency in ["0s", "50ms", "lognormal(median=1s,sigma=1)"] {
        assert_eq!(results(latency), reference, "{latency}");
    }
}

#[test]
fn failures_are_monotone_in_the_failure_rate() {
    let at = |rate: f64| -> Vec<bool> {
        let m = MockModel::new()
            .with_seed(5)
            .with_failure_rate(rate)
            .expect("valid");
        (0..1_000).map(|i| m.draw(&i.to_string()).fails).collect()
    };
    let (low, high) = (at(0.1), at(0.2));
    assert!(
        low.iter().zip(&high).all(|(l, h)| !l || *h),
        "a failure at 0.1 also fails at 0.2"
    );
}
