//! [`Metrics`]: the Prometheus registry behind `GET /metrics` (prediction outcomes,
//! queue gauges, queue-wait and model-time histograms, HTTP requests and durations).

use std::sync::Arc;
use std::time::Duration;

use mockpredict_core::backend::Finished;
use mockpredict_core::{Observer, Stats};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

struct Inner {
    registry: Registry,
    predictions: Family<StatusLabel, Counter>,
    rejected: Counter,
    queue_depth: Gauge,
    in_flight: Gauge,
    capacity: Gauge,
    concurrency: Gauge,
    retained: Gauge,
    event_streams: Gauge,
    queue_wait: Histogram,
    predict_time: Histogram,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabel, Histogram>,
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
        let event_streams = gauge(&mut registry, "event_streams", "Open event streams");
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
                predictions,
                rejected,
                queue_depth,
                in_flight,
                capacity,
                concurrency,
                retained,
                event_streams,
                queue_wait,
                predict_time,
                requests,
                request_duration,
            }),
        }
    }

    /// An [`Observer`] to give the queue's builder, so finished predictions are
    /// counted and timed.
    pub fn observer(&self) -> impl Observer {
        MetricsObserver(self.clone())
    }

    pub(crate) fn record_request(
        &self,
        method: &str,
        route: &'static str,
        code: u16,
        took: Duration,
    ) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route,
                code,
            })
            .inc();
        self.inner
            .request_duration
            .get_or_create(&RouteLabel { route })
            .observe(took.as_secs_f64());
    }

    /// Counts an open event stream until the returned guard drops.
    pub(crate) fn event_stream_opened(&self) -> StreamGuard {
        self.inner.event_streams.inc();
        StreamGuard(self.inner.event_streams.clone())
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
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &i.registry) {
            // Writing to a String cannot fail; keep whatever was written.
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

struct MetricsObserver(Metrics);

impl Observer for MetricsObserver {
    fn on_finish(&self, finished: &Finished) {
        let i = &self.0.inner;
        i.predictions
            .get_or_create(&StatusLabel {
                status: finished.status.as_str(),
            })
            .inc();
        i.queue_wait.observe(finished.queue_time.as_secs_f64());
        if let Some(t) = finished.predict_time {
            i.predict_time.observe(t.as_secs_f64());
        }
    }
}

/// Decrements the open-event-streams gauge when dropped.
pub(crate) struct StreamGuard(Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
