//! Instant arithmetic that cannot panic: configured durations come from users (a TTL of
//! `500000000000y` parses), and `Instant + Duration` panics on overflow.

use std::time::Duration;

use tokio::time::Instant;

/// About 30 years: later than anything a running process will see, early enough that
/// adding it to any real instant does not overflow.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d`, or a far-future instant when that is not representable.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| far_future(now))
}

/// An instant so far ahead that it stands for "never".
pub(crate) fn far_future(now: Instant) -> Instant {
    now.checked_add(FAR).unwrap_or(now)
}
