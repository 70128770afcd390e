//! [`Metrics`]: the Prometheus registry behind `GET /metrics` (prediction outcomes,
//! queue gauges, queue-wait and model-time histograms, HTTP requests and durations).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::{Method, StatusCode};

use mockpredict_core::store::{Finished, Started};
use mockpredict_core::{Observer, Stats, Status};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::routes::{Route, label as route_label};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    code: u16,
}

/// Routes, plus one slot for "unmatched".
const ROUTE_SLOTS: usize = Route::ALL.len() + 1;

/// `method` label values; arbitrary methods would make unbounded label values.
const METHODS: [&str; 8] = [
    "GET", "POST", "OPTIONS", "HEAD", "PUT", "DELETE", "PATCH", "OTHER",
];

/// The status codes the server answers with; any other is counted through the
/// family's (slower) hash lookup.
const CODES: [u16; 14] = [
    200, 202, 204, 307, 400, 401, 404, 405, 413, 415, 422, 429, 500, 503,
];

const REQUEST_SLOTS: usize = ROUTE_SLOTS * METHODS.len() * CODES.len();

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::OPTIONS => 2,
        Method::HEAD => 3,
        Method::PUT => 4,
        Method::DELETE => 5,
        Method::PATCH => 6,
        _ => 7,
    }
}

fn route_index(route: Option<Route>) -> usize {
    route.map_or(Route::ALL.len(), |r| r as usize)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

struct Inner {
    registry: Registry,
    predictions: Family<StatusLabel, Counter>,
    /// Handles into `predictions` for the terminal statuses (succeeded, failed,
    /// canceled), made at start: counting a finished prediction is an atomic add, not
    /// a label hash and a lookup under the family's lock. They show as 0 until used,
    /// as Prometheus advises for known label values.
    finished: [Counter; 3],
    rejected: Counter,
    /// Brought up to the queue's count at each scrape (see `render`), under
    /// `submitted_sync` so that two scrapes at once do not both add the difference.
    submitted: Counter,
    /// Predictions whose blocking work outlived them, brought up to the queue's count
    /// at each scrape as `submitted` is.
    blocking_overrun: Counter,
    submitted_sync: Mutex<()>,
    queue_depth: Gauge,
    in_flight: Gauge,
    capacity: Gauge,
    concurrency: Gauge,
    retained: Gauge,
    retained_bytes: Gauge,
    event_streams: Gauge,
    connections: Gauge,
    queue_wait: Histogram,
    predict_time: Histogram,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabel, Histogram>,
    /// Handles into `requests`, one per (route, method, code), made on first use:
    /// counting a request is then an index and an atomic add, not a label hash and a
    /// lookup under the family's lock. A counter clone shares its value, and a slot
    /// only exists in the family (and `/metrics`) once a request used it.
    request_slots: Box<[OnceLock<Counter>]>,
    /// The same for `request_duration`, one per route.
    duration_slots: [OnceLock<Histogram>; ROUTE_SLOTS],
}

/// The server's Prometheus metrics: a cheap, cloneable handle.
///
/// Prediction outcomes and timings arrive through the queue's [`Observer`] (see
/// [`Metrics::observer`]); queue gauges are read from [`Stats`] at scrape time.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 1 ms to ~4.6 min: covers both millisecond test latencies and 8–15 s models.
    exponential_buckets(0.001, 2.0, 19)
}

impl Metrics {
    /// A fresh registry with every metric registered (prefix `mockpredict_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mockpredict");
        let predictions = Family::<StatusLabel, Counter>::default();
        registry.register(
            "predictions",
            "Predictions finished, by final status",
            predictions.clone(),
        );
        let rejected = Counter::default();
        registry.register(
            "predictions_rejected",
            "Submissions refused because the queue was full",
            rejected.clone(),
        );
        let submitted = Counter::default();
        registry.register(
            "predictions_submitted",
            "Predictions admitted to the queue, sync and async: each ends up in \
             predictions_total, or is still queued or running",
            submitted.clone(),
        );
        let blocking_overrun = Counter::default();
        registry.register(
            "predictions_blocking_overrun",
            "Predictions that ended (canceled, timed out, shut down) while blocking work \
             they started through PredictContext::blocking still ran; each kept its \
             concurrency slot until that work returned",
            blocking_overrun.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let queue_depth = gauge(
            &mut registry,
            "queue_depth",
            "Predictions queued, waiting for a worker",
        );
        let in_flight = gauge(
            &mut registry,
            "in_flight",
            "Predictions the model is running now",
        );
        let capacity = gauge(
            &mut registry,
            "queue_capacity",
            "Most predictions queued + processing",
        );
        let concurrency = gauge(
            &mut registry,
            "queue_concurrency",
            "Most predictions running at once",
        );
        let retained = gauge(
            &mut registry,
            "retained",
            "Finished predictions still retained",
        );
        let retained_bytes = gauge(
            &mut registry,
            "retained_bytes",
            "Bytes the retained predictions weigh, where the backend has a byte budget \
             (the mock server's --max-retained-bytes); 0 otherwise",
        );
        let event_streams = gauge(&mut registry, "event_streams", "Open event streams");
        let connections = gauge(
            &mut registry,
            "connections",
            "Open client connections (at most --max-connections; more wait in the \
             listen backlog)",
        );
        let queue_wait = Histogram::new(seconds_buckets());
        registry.register_with_unit(
            "queue_wait",
            "Time from admission to start (or end, if never started)",
            prometheus_client::registry::Unit::Seconds,
            queue_wait.clone(),
        );
        let predict_time = Histogram::new(seconds_buckets());
        registry.register_with_unit(
            "predict",
            "Model time of finished predictions",
            prometheus_client::registry::Unit::Seconds,
            predict_time.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status code",
            requests.clone(),
        );
        let request_duration = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(seconds_buckets())
        });
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request (to its headers, for event streams)",
            prometheus_client::registry::Unit::Seconds,
            request_duration.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                finished: [Status::Succeeded, Status::Failed, Status::Canceled].map(|status| {
                    predictions
                        .get_or_create(&StatusLabel {
                            status: status.as_str(),
                        })
                        .clone()
                }),
                predictions,
                rejected,
                submitted,
                blocking_overrun,
                submitted_sync: Mutex::new(()),
                queue_depth,
                in_flight,
                capacity,
                concurrency,
                retained,
                retained_bytes,
                event_streams,
                connections,
                queue_wait,
                predict_time,
                requests,
                request_duration,
                request_slots: (0..REQUEST_SLOTS).map(|_| OnceLock::new()).collect(),
                duration_slots: std::array::from_fn(|_| OnceLock::new()),
            }),
        }
    }

    /// An [`Observer`] to give the queue's builder, so finished predictions are
    /// counted and timed.
    pub fn observer(&self) -> impl Observer {
        MetricsObserver(self.clone())
    }

    /// Counts one answered request and its duration. `route` is `None` when no route
    /// matched.
    pub(crate) fn record_request(
        &self,
        method: &Method,
        route: Option<Route>,
        code: StatusCode,
        took: Duration,
    ) {
        let i = &self.inner;
        let method = method_index(method);
        let route_slot = route_index(route);
        let labels = || RequestLabels {
            method: METHODS[method],
            route: route_label(route),
            code: code.as_u16(),
        };
        match CODES.iter().position(|&c| c == code.as_u16()) {
            Some(code_slot) => {
                let slot = (route_slot * METHODS.len() + method) * CODES.len() + code_slot;
                i.request_slots[slot]
                    .get_or_init(|| i.requests.get_or_create(&labels()).clone())
                    .inc();
            }
            None => {
                i.requests.get_or_create(&labels()).inc();
            }
        }
        i.duration_slots[route_slot]
            .get_or_init(|| {
                i.request_duration
                    .get_or_create(&RouteLabel {
                        route: route_label(route),
                    })
                    .clone()
            })
            .observe(took.as_secs_f64());
    }

    /// Counts an open event stream until the returned guard drops.
    pub(crate) fn event_stream_opened(&self) -> StreamGuard {
        self.inner.event_streams.inc();
        StreamGuard(self.inner.event_streams.clone())
    }

    /// Counts an open connection until the returned guard drops.
    pub(crate) fn connection_opened(&self) -> StreamGuard {
        self.inner.connections.inc();
        StreamGuard(self.inner.connections.clone())
    }

    pub(crate) fn record_rejected(&self) {
        self.inner.rejected.inc();
    }

    /// Renders the registry in the text exposition format, with gauges from `stats`.
    pub(crate) fn render(&self, stats: &Stats) -> String {
        let i = &self.inner;
        let set = |g: &Gauge, v: usize| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        set(&i.queue_depth, stats.queued);
        set(&i.in_flight, stats.processing);
        set(&i.capacity, stats.capacity);
        set(&i.concurrency, stats.concurrency);
        set(&i.retained, stats.retained);
        i.retained_bytes
            .set(i64::try_from(stats.retained_bytes).unwrap_or(i64::MAX));
        {
            let _one_at_a_time = i
                .submitted_sync
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (counter, total) in [
                (&i.submitted, stats.submitted_total),
                (&i.blocking_overrun, stats.blocking_overrun_total),
            ] {
                let shown = counter.get();
                if total > shown {
                    counter.inc_by(total - shown);
                }
            }
        }
        self.encode()
    }

    /// The registry in the text exposition format, gauges as they were last set.
    fn encode(&self) -> String {
        let i = &self.inner;
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &i.registry) {
            // Writing to a String cannot fail; keep whatever was written.
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The OpenMetrics text the registry writes, in the classic Prometheus text format
/// (0.0.4): a counter's `# HELP` and `# TYPE` lines name its `_total` series, and the
/// `# UNIT` and `# EOF` lines (OpenMetrics only) go. Samples are the same in both.
pub(crate) fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|tag| Some((tag, line.strip_prefix(tag)?)));
        match described {
            Some((tag, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{tag}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

struct MetricsObserver(Metrics);

impl Observer for MetricsObserver {
    /// The queue wait is observed when it ends, at the start, so that the histogram
    /// keeps up with the queue (and not one model time later).
    fn on_start(&self, started: &Started) {
        self.0
            .inner
            .queue_wait
            .observe(started.queue_time.as_secs_f64());
    }

    fn on_finish(&self, finished: &Finished) {
        let i = &self.0.inner;
        match finished.status {
            Status::Succeeded => i.finished[0].inc(),
            Status::Failed => i.finished[1].inc(),
            Status::Canceled => i.finished[2].inc(),
            // Only terminal statuses finish; counted under their name all the same.
            other => i
                .predictions
                .get_or_create(&StatusLabel {
                    status: other.as_str(),
                })
                .inc(),
        };
        // One that started was observed then; one that never did (canceled or timed
        // out while queued) waited until its end.
        if finished.previous == Status::Queued {
            i.queue_wait.observe(finished.queue_time.as_secs_f64());
        }
        if let Some(t) = finished.predict_time {
            i.predict_time.observe(t.as_secs_f64());
        }
    }
}

/// Decrements its gauge (open event streams, open connections) when dropped.
pub(crate) struct StreamGuard(Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 0.0.4 rewrite knows counters, gauges and histograms, with plain HELP texts
    /// and no exemplars: the registry must hold nothing else (an `info` or
    /// `stateset` family, a `"` or `\\` in a HELP text would need more).
    #[test]
    fn the_registry_holds_only_what_the_text_rewrite_knows() {
        let m = Metrics::new();
        m.record_request(
            &Method::GET,
            Some(Route::Healthz),
            StatusCode::OK,
            Duration::ZERO,
        );
        let om = m.encode();
        for line in om.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let kind = t.rsplit(' ').next().expect("a type");
                assert!(matches!(kind, "counter" | "gauge" | "histogram"), "{line}");
            }
            if line.starts_with("# HELP ") {
                assert!(!line.contains('"') && !line.contains('\\'), "{line}");
            }
            assert!(!line.contains(" # {"), "an exemplar: {line}");
        }
        let text = to_prometheus_text(&om);
        assert!(text.contains("# TYPE mockpredict_http_requests_total counter\n"));
        assert!(text.contains("# HELP mockpredict_http_requests_total "));
        assert!(text.contains("# TYPE mockpredict_queue_depth gauge\n"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }

    #[test]
    fn requests_are_counted_by_method_route_and_code_including_unlisted_codes() {
        let m = Metrics::new();
        let ms = Duration::from_millis(1);
        for _ in 0..3 {
            m.record_request(&Method::GET, Some(Route::Healthz), StatusCode::OK, ms);
        }
        m.record_request(&Method::HEAD, Some(Route::Healthz), StatusCode::OK, ms);
        let other = Method::from_bytes(b"PROPFIND").expect("a method");
        m.record_request(&other, None, StatusCode::NOT_FOUND, ms);
        m.record_request(&Method::GET, Some(Route::Root), StatusCode::IM_A_TEAPOT, ms);
        let text = m.encode();
        for needle in [
            r#"mockpredict_http_requests_total{method="GET",route="/healthz",code="200"} 3"#,
            r#"mockpredict_http_requests_total{method="HEAD",route="/healthz",code="200"} 1"#,
            r#"mockpredict_http_requests_total{method="OTHER",route="unmatched",code="404"} 1"#,
            r#"mockpredict_http_requests_total{method="GET",route="/",code="418"} 1"#,
            r#"mockpredict_http_request_duration_seconds_count{route="/healthz"} 4"#,
            r#"mockpredict_http_request_duration_seconds_count{route="unmatched"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        // Only label sets that were used appear.
        assert!(!text.contains(r#"route="/metrics""#), "{text}");
    }
}
