//! [`Latency`]: how long the mock model takes, and the parser for its human forms
//! (`8s..15s`, `250ms`, `lognormal(median=10s,sigma=0.6,max=60s)`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::rng::SplitMix64;

/// A latency distribution for the mock model.
///
/// Parse one from text with [`str::parse`]; every front-end flag uses this parser:
///
/// | text | meaning |
/// |---|---|
/// | `250ms`, `2s`, `0s`, `1m 30s` | always exactly that long |
/// | `8s..15s` | uniform between the two, inclusive |
/// | `lognormal(median=10s,sigma=0.6,min=1s,max=60s)` | log-normal around the median, clamped to `[min, max]`; `sigma` defaults to 0.5, `min` to 0 and `max` to 10 × the median |
///
/// ```
/// use std::time::Duration;
/// use mockpredict_core::Latency;
///
/// let l: Latency = "8s..15s".parse()?;
/// assert_eq!(l, Latency::Uniform { min: Duration::from_secs(8), max: Duration::from_secs(15) });
/// assert!("fast".parse::<Latency>().is_err());
/// # Ok::<(), mockpredict_core::ParseLatencyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Always this long.
    Fixed(Duration),
    /// Uniform in `[min, max]`.
    Uniform {
        /// Shortest latency.
        min: Duration,
        /// Longest latency.
        max: Duration,
    },
    /// Log-normal with this median and shape, clamped to `[min, max]`: most
    /// predictions near the median, a long tail of slow ones, as real inference has.
    LogNormal {
        /// The median latency (the distribution's `e^mu`).
        median: Duration,
        /// The shape: the standard deviation of the latency's natural log.
        sigma: f64,
        /// Clamp below.
        min: Duration,
        /// Clamp above.
        max: Duration,
    },
}

impl Default for Latency {
    /// The original service's latency: uniform in 8–15 s.
    fn default() -> Self {
        Latency::Uniform {
            min: Duration::from_secs(8),
            max: Duration::from_secs(15),
        }
    }
}

impl Latency {
    /// The shortest latency this distribution can produce.
    pub fn min(&self) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, .. } | Latency::LogNormal { min, .. } => min,
        }
    }

    /// The longest latency this distribution can produce.
    pub fn max(&self) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { max, .. } | Latency::LogNormal { max, .. } => max,
        }
    }

    /// A typical latency: the midpoint or median. The mock reports it as its
    /// [`Model::typical_latency`](crate::Model::typical_latency), for retry hints.
    pub fn typical(&self) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => min + (max - min) / 2,
            Latency::LogNormal { median, .. } => median,
        }
    }

    pub(crate) fn sample(&self, rng: &mut SplitMix64) -> Duration {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => {
                let span = (max - min).as_nanos() as u64;
                min + Duration::from_nanos(rng.below_inclusive(span))
            }
            Latency::LogNormal {
                median,
                sigma,
                min,
                max,
            } => {
                let z = rng.standard_normal();
                let secs = median.as_secs_f64() * (sigma * z).exp();
                Duration::try_from_secs_f64(secs)
                    .unwrap_or(max)
                    .clamp(min, max)
            }
        }
    }
}

/// The error from parsing a [`Latency`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid latency {input:?}: {reason} (expected a duration like `250ms` or `2s`, a range like `8s..15s`, or `lognormal(median=10s,sigma=0.5,max=60s)`)"
)]
pub struct ParseLatencyError {
    input: String,
    reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> ParseLatencyError {
    ParseLatencyError {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

fn duration(input: &str, text: &str) -> Result<Duration, ParseLatencyError> {
    humantime::parse_duration(text.trim())
        .map_err(|e| err(input, format!("{:?}: {e}", text.trim())))
}

impl FromStr for Latency {
    type Err = ParseLatencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(err(s, "empty"));
        }
        if let Some(args) = text
            .strip_prefix("lognormal(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            return parse_lognormal(s, args);
        }
        if let Some((lo, hi)) = text.split_once("..") {
            let (min, max) = (duration(s, lo)?, duration(s, hi)?);
            if min > max {
                return Err(err(s, "the range's start is after its end"));
            }
            return Ok(Latency::Uniform { min, max });
        }
        Ok(Latency::Fixed(duration(s, text)?))
    }
}

fn parse_lognormal(s: &str, args: &str) -> Result<Latency, ParseLatencyError> {
    let (mut median, mut sigma, mut min, mut max) = (None, 0.5_f64, Duration::ZERO, None);
    for pair in args.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| err(s, format!("{:?} is not key=value", pair.trim())))?;
        match key.trim() {
            "median" => median = Some(duration(s, value)?),
            "sigma" => {
                sigma = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| err(s, "sigma must be a non-negative number"))?;
            }
            "min" => min = duration(s, value)?,
            "max" => max = Some(duration(s, value)?),
            other => {
                return Err(err(
                    s,
                    format!("unknown key {other:?} (known: median, sigma, min, max)"),
                ));
            }
        }
    }
    let median = median.ok_or_else(|| err(s, "lognormal needs median=DURATION"))?;
    let max = max.unwrap_or(median.saturating_mul(10));
    if min > max {
        return Err(err(s, "min is greater than max"));
    }
    Ok(Latency::LogNormal {
        median,
        sigma,
        min,
        max,
    })
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use humantime::format_duration as d;
        match *self {
            Latency::Fixed(x) => write!(f, "{}", d(x)),
            Latency::Uniform { min, max } => write!(f, "{}..{}", d(min), d(max)),
            Latency::LogNormal {
                median,
                sigma,
                min,
                max,
            } => write!(
                f,
                "lognormal(median={},sigma={sigma},min={},max={})",
                d(median),
                d(min),
                d(max)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_the_human_forms() {
        assert_eq!(
            "250ms".parse(),
            Ok(Latency::Fixed(Duration::from_millis(250)))
        );
        assert_eq!("0s".parse(), Ok(Latency::Fixed(Duration::ZERO)));
        assert_eq!(
            " 8s..15s ".parse(),
            Ok(Latency::Uniform {
                min: secs(8),
                max: secs(15)
            })
        );
        assert_eq!(
            "lognormal(median=10s,sigma=0.6,max=60s)".parse(),
            Ok(Latency::LogNormal {
                median: secs(10),
                sigma: 0.6,
                min: Duration::ZERO,
                max: secs(60)
            })
        );
    }

    #[test]
    fn rejects_garbage_with_a_message_that_names_the_input() {
        for bad in [
            "",
            "fast",
            "8..15",
            "15s..8s",
            "lognormal(sigma=1)",
            "lognormal(median=1s,foo=2)",
            "lognormal(median=1s,sigma=-1)",
            "-5s",
        ] {
            let e = bad.parse::<Latency>().expect_err(bad);
            assert!(e.to_string().contains("invalid latency"), "{e}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "250ms",
            "8s..15s",
            "lognormal(median=10s,sigma=0.6,min=1s,max=1m)",
        ] {
            let l: Latency = text.parse().expect(text);
            assert_eq!(l.to_string().parse::<Latency>(), Ok(l), "{text}");
        }
    }

    #[test]
    fn samples_stay_inside_the_bounds() {
        let mut rng = SplitMix64::new(7);
        for l in [
            Latency::default(),
            "lognormal(median=2s,sigma=2,min=1s,max=3s)"
                .parse()
                .expect("valid"),
        ] {
            for _ in 0..10_000 {
                let x = l.sample(&mut rng);
                assert!(x >= l.min() && x <= l.max(), "{x:?} outside {l}");
            }
        }
    }

    #[test]
    fn lognormal_has_a_tail_above_the_median() {
        let l: Latency = "lognormal(median=1s,sigma=1,max=1h)"
            .parse()
            .expect("valid");
        let mut rng = SplitMix64::new(1);
        let mut xs: Vec<Duration> = (0..10_001).map(|_| l.sample(&mut rng)).collect();
        xs.sort();
        let median = xs[5000].as_secs_f64();
        let p99 = xs[9900].as_secs_f64();
        assert!((0.9..1.1).contains(&median), "median {median}");
        assert!(p99 > 5.0 * median, "p99 {p99} is not a long tail");
    }
}
