//! The prediction body (`GET /predictions/predict/{id}`, the most frequent answer
//! after the 202) written field by field: the same bytes as serde_json gives for
//! [`PredictionBody`](crate::wire::PredictionBody) (tests compare them), without
//! escaping the constant keys and with a calendar routine for the RFC 3339 timestamps.
//! Only the model's input and output, and a failure's error, go through serde. Through
//! the derived `Serialize`, the body cost ~6,500 instructions a request, more than
//! hyper's parsing and writing together (BENCHMARKS.md, "HTTP load").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mockpredict_core::{Prediction, PredictionId};
use serde::Serialize;

use crate::wire::PENDING_MESSAGE;

/// The JSON body of `p`, as [`PredictionBody`](crate::wire::PredictionBody) serializes.
///
/// # Errors
///
/// When the model's input or output does not serialize.
pub(crate) fn prediction_json<I: Serialize, O: Serialize>(
    p: &Prediction<I, O>,
) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(br#"{"prediction_id":""#);
    push_id(&mut out, p.id);
    out.extend_from_slice(br#"","status":""#);
    out.extend_from_slice(p.status.as_str().as_bytes());
    if !p.is_finished() {
        out.extend_from_slice(br#"","message":""#);
        out.extend_from_slice(PENDING_MESSAGE.as_bytes());
    }
    out.extend_from_slice(br#"","input":"#);
    serde_json::to_writer(&mut out, &*p.input)?;
    out.extend_from_slice(br#","output":"#);
    match p.output.as_deref() {
        Some(output) => serde_json::to_writer(&mut out, output)?,
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","error":"#);
    match &p.error {
        Some(error) => serde_json::to_writer(&mut out, error)?,
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","created_at":"#);
    push_time(&mut out, Some(p.created_at));
    out.extend_from_slice(br#","started_at":"#);
    push_time(&mut out, p.started_at);
    out.extend_from_slice(br#","completed_at":"#);
    push_time(&mut out, p.completed_at);
    out.extend_from_slice(br#","metrics":{"predict_time":"#);
    push_seconds(&mut out, p.predict_time)?;
    out.extend_from_slice(br#","queue_time":"#);
    push_seconds(&mut out, p.queue_time)?;
    out.extend_from_slice(b"}}");
    Ok(out)
}

/// A hyphenated lowercase UUID, as its serde form.
fn push_id(out: &mut Vec<u8>, id: PredictionId) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(id.as_uuid().hyphenated().encode_lower(&mut buf).as_bytes());
}

/// Seconds as an `f64` (`null` when absent), as serde_json writes it.
fn push_seconds(out: &mut Vec<u8>, d: Option<Duration>) -> serde_json::Result<()> {
    match d {
        Some(d) => serde_json::to_writer(out, &d.as_secs_f64()),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// A quoted RFC 3339 timestamp with milliseconds (`"2026-01-02T03:04:05.678Z"`), or
/// `null`: what `humantime::format_rfc3339_millis` writes. Times outside 1970–9999,
/// which the queue never stamps (it reads the wall clock), go to humantime itself,
/// which panics on them as the derived serializer does.
fn push_time(out: &mut Vec<u8>, t: Option<SystemTime>) {
    let Some(t) = t else {
        out.extend_from_slice(b"null");
        return;
    };
    match rfc3339_millis(t) {
        Some(text) => {
            out.push(b'"');
            out.extend_from_slice(&text);
            out.push(b'"');
        }
        None => {
            out.push(b'"');
            out.extend_from_slice(humantime::format_rfc3339_millis(t).to_string().as_bytes());
            out.push(b'"');
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a time in 1970–9999 (`None` otherwise), from the
/// days since the epoch by Howard Hinnant's `civil_from_days`.
fn rfc3339_millis(t: SystemTime) -> Option<[u8; 24]> {
    /// 10000-01-01T00:00:00Z.
    const YEAR_10000: u64 = 253_402_300_800;
    let since = t.duration_since(UNIX_EPOCH).ok()?;
    let secs = since.as_secs();
    if secs >= YEAR_10000 {
        return None;
    }
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let mut s = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            // A digit: `v % 10 < 10`.
            s[i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    put(20, 3, u64::from(since.subsec_millis()));
    Some(s)
}

/// (year, month 1–12, day 1–31) of `days` after 1970-01-01, proleptic Gregorian.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shifted so eras (400 years) start on 0000-03-01; no negative days after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use mockpredict_core::{FailureKind, InputRef, MockOutput, OutputRef, PredictionError, Status};

    use super::*;
    use crate::wire::PredictionBody;

    fn serde_bytes<I: Serialize, O: Serialize>(p: &Prediction<I, O>) -> Vec<u8> {
        serde_json::to_vec(&PredictionBody::from(p)).expect("serializes")
    }

    #[test]
    fn timestamps_are_humantimes() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut cases = vec![
            0,
            1,
            86_399_999,
            86_400_000,
            951_782_400_000, // 2000-02-29
            1_764_115_200_123,
            4_107_542_399_999, // 2100-02-28T23:59:59.999
            4_107_542_400_000, // 2100-03-01 (not a leap year)
            253_402_300_799_999,
        ];
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            cases.push((x >> 11) % 253_402_300_800_000);
        }
        for ms in cases {
            let t = UNIX_EPOCH + Duration::from_millis(ms) + Duration::from_nanos(123_456);
            let fast = rfc3339_millis(t).expect("in range");
            assert_eq!(
                std::str::from_utf8(&fast).expect("ascii"),
                humantime::format_rfc3339_millis(t).to_string(),
                "{ms} ms"
            );
        }
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            None
        );
    }

    #[test]
    fn prediction_bodies_are_serdes_bytes() {
        let created = UNIX_EPOCH + Duration::from_millis(1_764_115_200_123);
        let output = MockOutput {
            input: "a \"quoted\"\n\u{7f} input ✓".to_owned(),
            result: "7948".to_owned(),
        };
        let mut p: Prediction<String, MockOutput> = Prediction {
            id: PredictionId::new_v4(),
            status: Status::Queued,
            input: InputRef::new("a \"quoted\"\n\u{7f} input ✓".to_owned()),
            output: None,
            error: None,
            created_at: created,
            started_at: None,
            completed_at: None,
            queue_time: None,
            predict_time: None,
        };
        // Queued: a message, no start, no times.
        assert_eq!(prediction_json(&p).expect("writes"), serde_bytes(&p));
        p.status = Status::Processing;
        p.started_at = Some(created + Duration::from_millis(5));
        p.queue_time = Some(Duration::from_millis(5));
        assert_eq!(prediction_json(&p).expect("writes"), serde_bytes(&p));
        p.status = Status::Succeeded;
        p.output = Some(OutputRef::new(output));
        p.completed_at = Some(created + Duration::from_millis(9_229));
        p.predict_time = Some(Duration::from_nanos(9_224_000_001));
        assert_eq!(prediction_json(&p).expect("writes"), serde_bytes(&p));
        p.status = Status::Failed;
        p.output = None;
        p.error = Some(PredictionError {
            kind: FailureKind::Model,
            message: "boom \"x\"".to_owned(),
        });
        assert_eq!(prediction_json(&p).expect("writes"), serde_bytes(&p));
        p.status = Status::Canceled;
        p.error = None;
        p.predict_time = None;
        assert_eq!(prediction_json(&p).expect("writes"), serde_bytes(&p));
    }
}
