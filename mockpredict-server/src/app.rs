//! [`App`]: the HTTP API over a [`JobQueue`]: routing, auth, CORS, body limits, the
//! sync/async/poll/long-poll/cancel/events handlers, metrics and the access record. It turns
//! one request into one response and knows nothing of sockets (see [`serve`](crate::serve())).

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING,
    CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, ORIGIN,
    TRANSFER_ENCODING, VARY,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use mockpredict_core::store::{MemoryStore, Store};
use mockpredict_core::{JobQueue, Model, Prediction, PredictionId, QueueConfig, Status};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::access::AccessRecord;
use crate::config::FOREVER;
use crate::error::ApiError;
use crate::routes::{self, Resolved, Route};
use crate::wire::{self, ModelInfo, PredictRequest, PredictionBody, RootInfo};
use crate::{Cors, Metrics, Result, ServerConfig, body, openapi, sse};

/// The response body type of every route: a full JSON body or an event stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// The HTTP API over a queue running model `M` (with backend `B`): a cheap, cloneable
/// handle that answers requests with [`handle`](App::handle).
///
/// Any model whose input deserializes and whose output serializes can be served:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use mockpredict_core::{MockModel, QueueConfig};
/// use mockpredict_server::{App, ServerConfig};
///
/// let app = App::new(MockModel::new(), QueueConfig::default(), ServerConfig::default())?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// mockpredict_server::serve(listener, app, mockpredict_server::shutdown_signal())
/// .await?;
/// # Ok(())
/// # }
/// ```
pub struct App<M: Model, B = MemoryStore<<M as Model>::Input, <M as Model>::Output>>
where
    B: Store<Input = M::Input, Output = M::Output>,
{
    inner: Arc<Inner<M, B>>,
}

struct Inner<M: Model, B: Store<Input = M::Input, Output = M::Output>> {
    queue: JobQueue<M, B>,
    config: ServerConfig,
    metrics: Metrics,
    /// Set once shutdown begins: `/readyz` answers 503 and new predictions are refused,
    /// while requests already in flight finish.
    draining: AtomicBool,
    /// Set when shutdown's drain delay begins (before `draining`): `/readyz` answers
    /// 503, everything else works as before.
    unready: AtomicBool,
}

impl<M: Model, B: Store<Input = M::Input, Output = M::Output>> Clone for App<M, B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Model, B: Store<Input = M::Input, Output = M::Output>> std::fmt::Debug for App<M, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("queue", &self.inner.queue)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<M: Model> App<M> {
    /// Starts a queue over `model` (in-memory backend, metrics observer attached) and
    /// wraps it in the HTTP API.
    ///
    /// # Errors
    ///
    /// [`Error::Queue`](crate::Error::Queue) when `queue` does not validate;
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) when a listed CORS origin
    /// is not one ([`Cors::invalid_origin`](crate::Cors::invalid_origin)), so could
    /// never match.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the queue spawns its purge task).
    pub fn new(model: M, queue: QueueConfig, config: ServerConfig) -> Result<Self> {
        if let Some(bad) = config.cors.invalid_origin() {
            return Err(crate::Error::InvalidConfig(format!(
                "CORS origin {bad:?} is not an origin such as https://app.example or \
                 http://localhost:3000"
            )));
        }
        let metrics = Metrics::new();
        let queue = JobQueue::builder(model)
            .config(queue)
            .observer(metrics.observer())
            .build()?;
        Ok(Self::from_queue(queue, metrics, config))
    }
}

impl<M: Model, B: Store<Input = M::Input, Output = M::Output>> App<M, B> {
    /// Wraps an existing queue (any backend). Give the queue's builder
    /// `metrics.observer()` so prediction outcomes reach `/metrics`.
    pub fn from_queue(queue: JobQueue<M, B>, metrics: Metrics, config: ServerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                queue,
                config,
                metrics,
                draining: AtomicBool::new(false),
                unready: AtomicBool::new(false),
            }),
        }
    }

    /// The queue behind the API.
    pub fn queue(&self) -> &JobQueue<M, B> {
        &self.inner.queue
    }

    /// The HTTP configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Takes the server out of rotation: `/readyz` answers 503 from now on, and
    /// everything else keeps working, new predictions included. [`serve`](crate::serve())
    /// calls this when its shutdown signal fires and a
    /// [`drain_delay`](crate::ServerConfig::drain_delay) is set, before
    /// [`drain`](Self::drain).
    pub fn unready(&self) {
        self.inner.unready.store(true, Ordering::Release);
    }

    /// Starts draining: `/readyz` answers 503 and new predictions get 503
    /// `shutting_down`; everything else keeps working. [`serve`](crate::serve()) calls
    /// this when its shutdown signal fires.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Whether [`drain`](Self::drain) was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }
}

/// What [`App::dispatch`] gives back: the answer, the route that gave it (`None`: no
/// route matched) and the prediction the request concerned, for the access log.
struct Dispatched {
    resp: Response<Body>,
    route: Option<Route>,
    prediction_id: Option<PredictionId>,
}

impl Dispatched {
    fn new(resp: Response<Body>, route: Option<Route>) -> Self {
        Self {
            resp,
            route,
            prediction_id: None,
        }
    }
}

impl<M, B> App<M, B>
where
    M: Model,
    M::Input: Serialize + DeserializeOwned,
    M::Output: Serialize,
    B: Store<Input = M::Input, Output = M::Output>,
{
    /// Answers one request. Never fails: every error is a JSON error response.
    ///
    /// The request counts from this call, not from the future's first poll: a future
    /// dropped unpolled (its client hung up at once) is still recorded, as 499.
    #[inline(always)]
    pub fn handle<'a, Bd>(
        &'a self,
        req: Request<Bd>,
    ) -> impl Future<Output = Response<Body>> + Send + 'a
    where
        Bd: hyper::body::Body<Data = Bytes> + Send + 'a,
        Bd::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let mut pending = Unanswered {
            app: self,
            parts,
            started: Instant::now(),
            answered: false,
            waiting_on: std::sync::OnceLock::new(),
        };
        // Written out here rather than in an `async fn` called from here, and this fn
        // inlined always: the future's state is then built in the caller's, not built
        // on the stack and moved once per level (~750 instructions a request,
        // callgrind; BENCHMARKS.md, "Eighth pass"). The request's head lives here
        // once, in `pending`; the levels below borrow it, and only the body moves
        // down (a `Request` moved down each level was stored at each: BENCHMARKS.md,
        // "Ninth pass").
        async move {
            let Dispatched {
                mut resp,
                route,
                prediction_id,
            } = self
                .dispatch(&pending.parts, body, &pending.waiting_on)
                .await;
            pending.answered = true;
            let (parts, started) = (&pending.parts, pending.started);
            if parts.method == Method::HEAD {
                resp = without_body(resp);
            }
            self.apply_cors(resp.headers_mut(), parts);
            let took = started.elapsed();
            let status = resp.status();
            self.record(&parts.method, route, status, took, prediction_id);
            resp
        }
    }

    /// Counts an answered (or abandoned) request in the metrics and the access log.
    fn record(
        &self,
        method: &Method,
        route: Option<Route>,
        status: StatusCode,
        took: Duration,
        prediction_id: Option<PredictionId>,
    ) {
        self.inner
            .metrics
            .record_request(method, route, status, took);
        if self.inner.config.access_log {
            self.inner.config.access_log_sink.0.record(
                &AccessRecord::new(method, routes::label(route), status, took)
                    .with_prediction_id(prediction_id),
            );
        }
    }

    /// The answer, the route that gave it, and the prediction concerned.
    /// Answers the request of head `req` and body `body`; a sync submission sets
    /// `waiting_on` to its prediction's ID before it waits, for the record of a client
    /// that hangs up meanwhile.
    async fn dispatch<Bd>(
        &self,
        req: &http::request::Parts,
        body: Bd,
        waiting_on: &std::sync::OnceLock<PredictionId>,
    ) -> Dispatched
    where
        Bd: hyper::body::Body<Data = Bytes> + Send,
        Bd::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri.path();
        if req.method == Method::OPTIONS {
            // A path with trailing slashes on a known route is answered as that route:
            // its other methods redirect there (307), and a browser's preflight cannot
            // follow a redirect, so the preflight itself must pass.
            let known = routes::allowed_methods(path)
                .or_else(|| trailing_slash_route(path).map(|(_, known)| known));
            return match known {
                Some((route, allow)) => Dispatched::new(options_response(allow), Some(route)),
                None => Dispatched::new(ApiError::RouteNotFound.into_response(), None),
            };
        }
        let (route, id) = match routes::resolve(&req.method, path) {
            Resolved::Found(route, id) => (route, id),
            Resolved::WrongMethod(route, allow) => {
                return Dispatched::new(
                    ApiError::MethodNotAllowed { allow }.into_response(),
                    Some(route),
                );
            }
            Resolved::NotFound => {
                return match slash_redirect(path, req.uri.query()) {
                    Some((route, location)) => Dispatched::new(redirect(location), Some(route)),
                    None => Dispatched::new(ApiError::RouteNotFound.into_response(), None),
                };
            }
        };
        if route.requires_auth() && !self.authorized(&req.headers) {
            return Dispatched::new(ApiError::Unauthorized.into_response(), Some(route));
        }
        // The `{id}` of the routes that have one: a malformed one is unknown (404).
        let prediction_id = match id.map(parse_id).transpose() {
            Ok(p) => p,
            Err(e) => return Dispatched::new(e.into_response(), Some(route)),
        };
        let (result, prediction_id) = match (route, prediction_id) {
            (Route::Root, _) => (self.root(), None),
            (Route::Healthz, _) => (
                Ok(static_json(StatusCode::OK, wire_static::HEALTH_OK)),
                None,
            ),
            (Route::Readyz, _) => (self.readyz().await, None),
            (Route::Metrics, _) => (Ok(self.metrics_response(&req.headers).await), None),
            (Route::OpenApi, _) => (Ok(openapi_response()), None),
            // The only arm that reads the body.
            (Route::Predict, _) => match self.predict(req, body, waiting_on).await {
                Ok((resp, id)) => (Ok(resp), Some(id)),
                Err(e) => (Err(e), None),
            },
            (Route::Prediction, Some(id)) => (self.poll(id, req.uri.query()).await, Some(id)),
            (Route::Cancel, Some(id)) => (self.cancel(id).await, Some(id)),
            (Route::Events, Some(id)) => {
                // Each event's ID is its status: a terminal one means the client has
                // had the last event.
                let had_the_end = req
                    .headers
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| matches!(v.trim(), "succeeded" | "failed" | "canceled"));
                (self.events(id, had_the_end).await, Some(id))
            }
            // The route table gives these routes an `{id}`; a test checks it.
            (Route::Prediction | Route::Cancel | Route::Events, None) => {
                (Err(ApiError::RouteNotFound), None)
            }
        };
        Dispatched {
            resp: result.unwrap_or_else(ApiError::into_response),
            route: Some(route),
            prediction_id,
        }
    }

    /// Checks `Authorization: Bearer <token>` in constant time (per byte; the length
    /// of the configured token is not secret enough to pad for).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.inner.config.api_token else {
            return true;
        };
        let Some(value) = headers.get(AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some(space) = value.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (scheme, credentials) = value.split_at(space);
        let credentials = credentials.trim_ascii();
        scheme.eq_ignore_ascii_case(b"bearer") && bool::from(credentials.ct_eq(expected.as_bytes()))
    }

    /// Adds the CORS headers that the policy gives `req` to its answer's `headers`.
    fn apply_cors(&self, headers: &mut HeaderMap, req: &http::request::Parts) {
        let allow_origin = match &self.inner.config.cors {
            Cors::Off => return,
            Cors::Any => HeaderValue::from_static("*"),
            Cors::Origins(list) => {
                // The answer depends on Origin, so caches must key on it.
                headers.append(VARY, HeaderValue::from_static("origin"));
                match req.headers.get(ORIGIN) {
                    Some(o) if list.iter().any(|a| a.as_bytes() == o.as_bytes()) => o.clone(),
                    _ => return,
                }
            }
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        let preflight = req.method == Method::OPTIONS
            && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            headers.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            headers.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                req.headers
                    .get(ACCESS_CONTROL_REQUEST_HEADERS)
                    .cloned()
                    .unwrap_or_else(|| {
                        HeaderValue::from_static("authorization, content-type, prefer")
                    }),
            );
            headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        } else {
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("location, retry-after, preference-applied"),
            );
        }
    }

    fn root(&self) -> Result<Response<Body>, ApiError> {
        let model = self.inner.queue.model();
        json(
            StatusCode::OK,
            &RootInfo {
                message: wire::ROOT_MESSAGE.into(),
                status: "success".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                model: ModelInfo {
                    name: model.name().into(),
                    version: model.version().into(),
                },
            },
        )
    }

    async fn readyz(&self) -> Result<Response<Body>, ApiError> {
        let withdrawn = self.inner.unready.load(Ordering::Acquire) || self.is_draining();
        if !withdrawn && self.inner.queue.is_ready().await {
            Ok(static_json(StatusCode::OK, wire_static::HEALTH_READY))
        } else {
            Err(ApiError::NotReady)
        }
    }

    /// OpenMetrics to a scraper that asks for it (Prometheus does, in `Accept`); the
    /// classic Prometheus text format (0.0.4) otherwise, which is what a client that
    /// names no format (curl, an older parser) expects.
    async fn metrics_response(&self, headers: &http::HeaderMap) -> Response<Body> {
        let text = self.inner.metrics.render(&self.inner.queue.stats().await);
        let openmetrics = prefers_openmetrics(headers);
        let (text, content_type) = if openmetrics {
            (
                text,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                crate::metrics::to_prometheus_text(&text),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        let mut resp = Response::new(full(text));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(http::header::VARY, HeaderValue::from_static("accept"));
        resp
    }

    /// Submits, and answers with the new prediction's ID.
    async fn predict<Bd>(
        &self,
        req: &http::request::Parts,
        body: Bd,
        waiting_on: &std::sync::OnceLock<PredictionId>,
    ) -> Result<(Response<Body>, PredictionId), ApiError>
    where
        Bd: hyper::body::Body<Data = Bytes> + Send,
        Bd::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if self.is_draining() {
            return Err(ApiError::ShuttingDown);
        }
        check_content_type(&req.headers)?;
        let (mode, applied) = choose_mode(
            req.uri.query(),
            &req.headers,
            self.inner.config.sync_timeout,
        )?;
        // A body that trickles in or stalls must not hold the connection (and a
        // connection slot) forever: it gets the same limit as the headers.
        let limit = self.inner.config.header_read_timeout.min(FOREVER);
        let bytes =
            read_body_in_time(&req.headers, body, self.inner.config.max_body, limit).await?;
        let input: M::Input = parse_input(&bytes)?;
        let id = self.inner.queue.submit(input).await.map_err(|e| {
            if matches!(e, mockpredict_core::Error::QueueFull { .. }) {
                self.inner.metrics.record_rejected();
            }
            ApiError::from(e)
        })?;
        let mut resp = match mode {
            Mode::Async => accepted(id, Status::Queued, wire::ASYNC_MESSAGE)?,
            Mode::Sync(wait) => {
                let _ = waiting_on.set(id);
                // If the client hangs up, this future is dropped and the prediction
                // runs on: it is admitted work, retrievable by ID like any other.
                // Boxed: a sync wait is the rare, long state, and the futures of
                // every request (async submits and polls too) would otherwise be
                // sized for it.
                let p = Box::pin(self.inner.queue.wait(id, Some(wait))).await?;
                if p.is_finished() {
                    bytes_response(StatusCode::OK, sync_body(&p)?)
                } else {
                    let message = format!(
                        "{} Still {} after the sync wait of {}; poll its Location.",
                        wire::PENDING_MESSAGE,
                        p.status,
                        humantime::format_duration(wait)
                    );
                    accepted(id, p.status, &message)?
                }
            }
        };
        if let Some(applied) = applied.and_then(|a| HeaderValue::from_str(&a).ok()) {
            resp.headers_mut().insert(PREFERENCE_APPLIED, applied);
        }
        Ok((resp, id))
    }

    async fn poll(
        &self,
        id: PredictionId,
        query: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let wait = match query_param(query, "wait") {
            Some(v) => Some(parse_seconds(
                &v,
                "wait",
                self.inner.config.max_wait.min(FOREVER),
            )?),
            None => None,
        };
        let p = match wait {
            // Boxed, as a sync submission's wait is.
            Some(w) if !w.is_zero() => Box::pin(self.inner.queue.wait(id, Some(w))).await?,
            _ => self.inner.queue.get(id).await?,
        };
        let status = if p.is_finished() {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        prediction_response(status, &p)
    }

    async fn cancel(&self, id: PredictionId) -> Result<Response<Body>, ApiError> {
        let p = self.inner.queue.cancel(id).await?;
        prediction_response(StatusCode::OK, &p)
    }

    /// The prediction's event stream. A reconnect from a client that has had the
    /// terminal event (`had_the_end`: its `Last-Event-ID`, which a browser's
    /// `EventSource` sends by itself when it reconnects after the stream ends, is a
    /// terminal status) gets 204, which tells `EventSource` to stop: otherwise it would
    /// reconnect, and be sent the last event again, forever. Any other reconnect (one
    /// cut off mid-way) gets the stream, from the status now.
    async fn events(
        &self,
        id: PredictionId,
        had_the_end: bool,
    ) -> Result<Response<Body>, ApiError> {
        if had_the_end && self.inner.queue.get(id).await?.is_finished() {
            let mut resp = Response::new(full(Vec::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            return Ok(resp);
        }
        let subscription = self.inner.queue.subscribe(id).await?;
        let body = sse::stream(
            subscription,
            self.inner.config.sse_keep_alive,
            self.inner.metrics.clone(),
        );
        let mut resp = Response::new(body);
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tell nginx-style proxies not to buffer the stream.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Ok(resp)
    }
}

/// Whether `Accept` rates OpenMetrics above zero and no lower than the classic text
/// format (`text/plain`, `text/*` or `*/*`, whichever rates highest): media types
/// compared without regard to case, `q` 1 when absent.
fn prefers_openmetrics(headers: &http::HeaderMap) -> bool {
    let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
    let ranges = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for range in ranges {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// nginx's "client closed request": what the metrics and the access log say of a
/// request whose client went away before its answer was ready.
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// A request being handled. Dropped before its answer (its client hung up, so hyper
/// dropped the handler's future: a gateway's timeout on a sync request or a
/// long-poll, say), it is recorded with status 499 and the route and prediction ID of
/// its path, so that such requests show in `/metrics` and the access log too.
struct Unanswered<'a, M, B>
where
    M: Model,
    M::Input: Serialize + DeserializeOwned,
    M::Output: Serialize,
    B: Store<Input = M::Input, Output = M::Output>,
{
    app: &'a App<M, B>,
    /// The request's head; the handler borrows it.
    parts: http::request::Parts,
    started: Instant,
    answered: bool,
    /// The prediction a sync submission is waiting on.
    waiting_on: std::sync::OnceLock<PredictionId>,
}

impl<M, B> Drop for Unanswered<'_, M, B>
where
    M: Model,
    M::Input: Serialize + DeserializeOwned,
    M::Output: Serialize,
    B: Store<Input = M::Input, Output = M::Output>,
{
    fn drop(&mut self) {
        // A panic unwinding through the handler is no hang-up (the connection task
        // reports it).
        if self.answered || std::thread::panicking() {
            return;
        }
        let (route, id) = match routes::resolve(&self.parts.method, self.parts.uri.path()) {
            Resolved::Found(route, id) => (Some(route), id.and_then(|id| parse_id(id).ok())),
            Resolved::WrongMethod(route, _) => (Some(route), None),
            Resolved::NotFound => (None, None),
        };
        let id = id.or_else(|| self.waiting_on.get().copied());
        let status = StatusCode::from_u16(CLIENT_CLOSED).expect("a valid status code");
        self.app.record(
            &self.parts.method,
            route,
            status,
            self.started.elapsed(),
            id,
        );
    }
}

/// How `POST /predictions/predict` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 202 with the ID at once.
    Async,
    /// Hold the request up to this long, then 200 with the result or 202 with the ID.
    Sync(Duration),
}

/// Picks the mode: the `async_mode` query flag wins; without it, RFC 7240 `Prefer`
/// (`respond-async` alone: async; `wait=N`, with or without `respond-async`: wait up
/// to N s, then answer async); without either, async (the original's default).
/// Returns the mode and the `Preference-Applied` value, if a preference was used.
fn choose_mode(
    query: Option<&str>,
    headers: &HeaderMap,
    sync_timeout: Duration,
) -> Result<(Mode, Option<String>), ApiError> {
    let async_mode = match query_param(query, "async_mode") {
        Some(v) => Some(parse_bool(&v).ok_or_else(|| {
            ApiError::Validation(format!(
                "query parameter async_mode must be a boolean (true or false), got {v:?}"
            ))
        })?),
        None => None,
    };
    let prefer = Prefer::parse(headers);
    // A wait longer than the server's limit is cut to it, and `Preference-Applied`
    // says the wait that was really applied.
    let wait = |secs: Option<u64>| {
        let w = secs.map_or(sync_timeout, Duration::from_secs);
        w.min(sync_timeout).min(FOREVER)
    };
    let applied_wait = |secs: Option<u64>| secs.map(|_| format!("wait={}", wait(secs).as_secs()));
    Ok(match async_mode {
        Some(true) => (Mode::Async, None),
        Some(false) => (Mode::Sync(wait(prefer.wait)), applied_wait(prefer.wait)),
        None => match (prefer.respond_async, prefer.wait) {
            (_, Some(secs)) => (Mode::Sync(wait(Some(secs))), applied_wait(Some(secs))),
            (true, None) => (Mode::Async, Some("respond-async".to_owned())),
            (false, None) => (Mode::Async, None),
        },
    })
}

/// RFC 7240's request header (a constant: looking it up by `&str` parses the name on
/// every request).
const PREFER: HeaderName = HeaderName::from_static("prefer");
/// RFC 7240's response header.
const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// The preferences of RFC 7240 that matter here; unknown or malformed ones are ignored,
/// and of one given more than once only the first counts, as the RFC asks (§2).
#[derive(Debug, Default, PartialEq, Eq)]
struct Prefer {
    respond_async: bool,
    wait: Option<u64>,
}

impl Prefer {
    fn parse(headers: &HeaderMap) -> Self {
        let mut prefer = Prefer::default();
        let mut wait_seen = false;
        for value in headers.get_all(&PREFER) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',') {
                // Drop any `; parameters`.
                let token = token.split(';').next().unwrap_or_default().trim();
                let (name, val) = match token.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (token, None),
                };
                if name.eq_ignore_ascii_case("respond-async") {
                    prefer.respond_async = true;
                } else if name.eq_ignore_ascii_case("wait") && !wait_seen {
                    wait_seen = true;
                    prefer.wait = val.and_then(parse_delta_seconds);
                }
            }
        }
        prefer
    }
}

/// RFC 9110 delta-seconds: digits only; a value too large for a `u64` is as good as
/// infinite (it is capped later anyway), not malformed.
fn parse_delta_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse().unwrap_or(u64::MAX))
}

/// The first value of `name` in a query string, percent-decoded (keys too), so
/// `async%5Fmode=%66alse` means what `async_mode=false` means.
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<Cow<'q, str>> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` escapes; a malformed escape is kept as it is, and bytes that do not
/// decode to UTF-8 are replaced (the values here are numbers and booleans).
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let hex = |i: usize| bytes.get(i).and_then(|&b| char::from(b).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits: at most 0xff.
                out.extend(u8::try_from(high * 16 + low).ok());
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Booleans as FastAPI/pydantic accepted them in the original.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// A non-negative number of seconds, cut to `cap`; a value too large for a
/// `Duration` (`1e300`, `inf`) is cut to `cap` too, not refused.
fn parse_seconds(v: &str, name: &str, cap: Duration) -> Result<Duration, ApiError> {
    let secs = v.parse::<f64>().ok().filter(|s| *s >= 0.0).ok_or_else(|| {
        ApiError::Validation(format!(
            "query parameter {name} must be a number of seconds >= 0, got {v:?}"
        ))
    })?;
    Ok(Duration::try_from_secs_f64(secs)
        .unwrap_or(Duration::MAX)
        .min(cap))
}

/// A path ID that is not a UUID cannot name a prediction: 404, like an unknown one.
/// Percent-decoded first: `%2D` is `-` (RFC 3986 §2.3).
fn parse_id(id: &str) -> Result<PredictionId, ApiError> {
    percent_decode(id)
        .parse()
        .map_err(|_| ApiError::PredictionNotFound)
}

/// JSON, or no `Content-Type` at all (the original, FastAPI, parsed such bodies as
/// JSON, and old clients may rely on it); and no content coding but `identity`, since
/// the server decodes none (a gzip body would otherwise read as malformed JSON, and a
/// coded body that happens to be JSON text would be taken at face value).
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    for coding in headers.get_all(CONTENT_ENCODING) {
        if has_coding_other_than(coding, b"identity") {
            return Err(ApiError::UnsupportedEncoding(lossy(coding)));
        }
    }
    // hyper decodes `chunked` and passes any other transfer coding on undecoded.
    for coding in headers.get_all(TRANSFER_ENCODING) {
        if has_coding_other_than(coding, b"chunked") {
            return Err(ApiError::UnsupportedTransferCoding(lossy(coding)));
        }
    }
    let mut types = headers.get_all(CONTENT_TYPE).iter();
    let Some(ct) = types.next() else {
        return Ok(());
    };
    // A singleton field (RFC 9110 §8.3): two values leave the body's type unknown.
    if let Some(other) = types.next() {
        return Err(ApiError::TwoContentTypes(format!(
            "{:?} and {:?}",
            lossy(ct),
            lossy(other)
        )));
    }
    let bytes = ct.as_bytes();
    let essence = bytes
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let has_prefix = |prefix: &[u8]| {
        essence.len() >= prefix.len() && essence[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    let has_suffix = |suffix: &[u8]| {
        essence.len() >= suffix.len()
            && essence[essence.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    let is_json = essence.eq_ignore_ascii_case(b"application/json")
        || (has_prefix(b"application/") && has_suffix(b"+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(lossy(ct)))
    }
}

/// Whether a comma-separated coding list names a coding other than `accepted`.
fn has_coding_other_than(list: &HeaderValue, accepted: &[u8]) -> bool {
    list.as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(accepted))
}

fn lossy(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// Reads the body as [`read_body`] does (at most `max` bytes), within the time
/// `limit`; a body that came with its headers (the usual case) is read at the first
/// poll, with no timer and no clock read for it. A function of its own, not a block
/// in `predict`: the reader's state then shares `predict`'s future with the later
/// steps' instead of adding to it (BENCHMARKS.md, "Ninth pass").
async fn read_body_in_time<Bd>(
    headers: &HeaderMap,
    body: Bd,
    max: usize,
    limit: Duration,
) -> Result<Bytes, ApiError>
where
    Bd: hyper::body::Body<Data = Bytes> + Send,
    Bd::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut read = std::pin::pin!(read_body(headers, body, max));
    match std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
        Poll::Ready(bytes) => bytes,
        // Boxed: the timer is large, and rarely needed.
        Poll::Pending => Box::pin(tokio::time::timeout(limit, read))
            .await
            .map_err(|_| ApiError::RequestTimeout { after: limit })?,
    }
}

/// Reads the body, refusing early on a `Content-Length` (in `headers`) over `limit`
/// and otherwise stopping as soon as `limit` bytes are exceeded, so an oversized body
/// is never held.
async fn read_body<Bd>(headers: &HeaderMap, body: Bd, limit: usize) -> Result<Bytes, ApiError>
where
    Bd: hyper::body::Body<Data = Bytes> + Send,
    Bd::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let collected = Limited::new(body, limit).collect().await.map_err(|e| {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::UnreadableBody(e.to_string())
        }
    })?;
    Ok(collected.to_bytes())
}

/// Syntax errors are 400 (not JSON); well-formed JSON of the wrong shape is 422.
fn parse_input<I: DeserializeOwned>(bytes: &[u8]) -> Result<I, ApiError> {
    use serde_json::error::Category;
    // JSON text is UTF-8 (RFC 8259 §8.1). serde_json checks only the strings it keeps,
    // so a bad byte in an ignored field (`{"x": "\xff", "input": "ok"}`) would pass:
    // the whole body is checked once here (short bodies, an ASCII fast path), and
    // parsed as the `str` it then is.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::MalformedJson(format!(
            "not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    // The body must be an object, as the original (FastAPI) required. Anything else is
    // only checked for syntax: serde's derive would read a struct from an array
    // (`["x"]` as `{"input": "x"}`), and report the rest of a longer one as a syntax
    // error.
    if text.trim_ascii_start().as_bytes().first() != Some(&b'{') {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => ApiError::Validation(
                "invalid request body: expected a JSON object such as {\"input\": ...}".into(),
            ),
            Err(e) => ApiError::MalformedJson(e.to_string()),
        });
    }
    match serde_json::from_str::<PredictRequest<I>>(text) {
        Ok(request) => Ok(request.input),
        Err(e) => Err(match e.classify() {
            // serde stops at the first wrong type, before it would reach a later syntax
            // error (`{"input": 5 garbage`): only JSON that parses as a whole is of the
            // wrong shape. This second pass runs on the error path only.
            Category::Data => match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => ApiError::Validation(format!("invalid request body: {e}")),
                Err(syntax) => ApiError::MalformedJson(syntax.to_string()),
            },
            Category::Syntax | Category::Eof => ApiError::MalformedJson(e.to_string()),
            Category::Io => ApiError::UnreadableBody(e.to_string()),
        }),
    }
}

/// Bodies that never change, written once.
mod wire_static {
    /// `GET /healthz`: what `wire::Health { status: "ok" }` serializes to.
    pub(super) const HEALTH_OK: &[u8] = br#"{"status":"ok"}"#;
    /// A ready `GET /readyz`: `wire::Health { status: "ready" }`.
    pub(super) const HEALTH_READY: &[u8] = br#"{"status":"ready"}"#;
}

/// A JSON answer whose body is a constant: no serializing, no allocation.
fn static_json(status: StatusCode, body: &'static [u8]) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn bytes_response(status: StatusCode, bytes: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Result<Response<Body>, ApiError> {
    // A prediction's body is ~400 bytes: sized once instead of grown from 128.
    let mut bytes = Vec::with_capacity(512);
    serde_json::to_writer(&mut bytes, body)
        .map_err(|e| ApiError::Internal(format!("serializing a response: {e}")))?;
    Ok(bytes_response(status, bytes))
}

/// The 202 body, borrowing its message (the async one is a constant); serializes
/// exactly as [`wire::Accepted`] does (a test checks).
#[derive(Serialize)]
struct AcceptedRef<'a> {
    message: &'a str,
    prediction_id: PredictionId,
    status: Status,
}

fn accepted(id: PredictionId, status: Status, message: &str) -> Result<Response<Body>, ApiError> {
    if message == wire::ASYNC_MESSAGE && status == Status::Queued {
        let (body, location) = async_accepted(id);
        let mut resp = bytes_response(StatusCode::ACCEPTED, body);
        resp.headers_mut().insert(LOCATION, location);
        return Ok(resp);
    }
    let mut resp = json(
        StatusCode::ACCEPTED,
        &AcceptedRef {
            message,
            prediction_id: id,
            status,
        },
    )?;
    resp.headers_mut().insert(LOCATION, location(id));
    Ok(resp)
}

/// The async 202 body, the most frequent answer, and its `Location`: constant but for
/// the ID, so written as bytes (serde_json spent ~4,000 instructions on it, escaping
/// the constant text and growing its buffer), into one buffer that both share. A test
/// checks them against [`AcceptedRef`]'s serialization and [`location`].
fn async_accepted(id: PredictionId) -> (Bytes, HeaderValue) {
    const HEAD: &[u8] =
        br#"{"message":"Request received. Processing asynchronously.","prediction_id":""#;
    const TAIL: &[u8] = br#"","status":"queued"}"#;
    const ID: usize = uuid::fmt::Hyphenated::LENGTH;
    let mut uuid = [0u8; ID];
    let uuid = id.as_uuid().hyphenated().encode_lower(&mut uuid).as_bytes();
    let mut buf = Vec::with_capacity(HEAD.len() + ID + TAIL.len() + LOCATION_PREFIX.len() + ID);
    for part in [HEAD, uuid, TAIL, LOCATION_PREFIX, uuid] {
        buf.extend_from_slice(part);
    }
    let mut buf = Bytes::from(buf);
    let location = buf.split_off(HEAD.len() + ID + TAIL.len());
    let location = HeaderValue::from_maybe_shared(location)
        .expect("a path and a hyphenated UUID are visible ASCII");
    (buf, location)
}

/// Where a prediction is polled, up to its ID.
const LOCATION_PREFIX: &[u8] = b"/predictions/predict/";

/// `Location: /predictions/predict/{id}`, written without formatting machinery.
fn location(id: PredictionId) -> HeaderValue {
    let mut buf = [0u8; LOCATION_PREFIX.len() + uuid::fmt::Hyphenated::LENGTH];
    buf[..LOCATION_PREFIX.len()].copy_from_slice(LOCATION_PREFIX);
    id.as_uuid()
        .hyphenated()
        .encode_lower(&mut buf[LOCATION_PREFIX.len()..]);
    HeaderValue::from_bytes(&buf).expect("a path and a hyphenated UUID are visible ASCII")
}

fn prediction_response<I: Serialize, O: Serialize>(
    status: StatusCode,
    p: &Prediction<I, O>,
) -> Result<Response<Body>, ApiError> {
    let body = body::prediction_json(p)
        .map_err(|e| ApiError::Internal(format!("serializing a response: {e}")))?;
    Ok(bytes_response(status, body))
}

/// The sync 200 body: the prediction, with the output's fields also spread at the top
/// level (a non-object output appears as `result`), so the mock's answer starts with
/// the original `{"input", "result"}` keys. Prediction fields win a name clash.
///
/// Written in one pass from the borrowed prediction; only the output goes through a
/// `serde_json::Value`, to learn its field names.
fn sync_body<I: Serialize, O: Serialize>(p: &Prediction<I, O>) -> Result<Vec<u8>, ApiError> {
    use serde::ser::{SerializeMap, Serializer};
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;

    let internal =
        |e: serde_json::Error| ApiError::Internal(format!("serializing a response: {e}"));
    let body = PredictionBody::from(p);
    // The output is written once, and its fields spread from that text: through a
    // `Value` they would be re-formatted (an `f32` widened to `f64` digits), and the
    // spread would disagree with `output`.
    let output_text = p
        .output
        .as_ref()
        .map(|o| serde_json::to_string(&**o))
        .transpose()
        .map_err(internal)?;
    let output: Option<&RawValue> = output_text
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(internal)?;
    let spread: Vec<(String, &RawValue)> = match output {
        // In key order, as a `Value`'s map had them; the last of duplicate keys wins.
        Some(raw) if raw.get().starts_with('{') => {
            let fields: BTreeMap<String, &RawValue> =
                serde_json::from_str(raw.get()).map_err(internal)?;
            fields.into_iter().collect()
        }
        Some(raw) => vec![("result".to_owned(), raw)],
        None => Vec::new(),
    };
    // The keys the prediction itself writes below (`message` only while pending).
    let taken = |k: &str| match k {
        "prediction_id" | "status" | "input" | "output" | "error" | "created_at" | "started_at"
        | "completed_at" | "metrics" => true,
        "message" => body.message.is_some(),
        _ => false,
    };
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::new(&mut out);
    let mut map = ser.serialize_map(None).map_err(internal)?;
    map.serialize_entry("input", &body.input)
        .map_err(internal)?;
    for (k, v) in &spread {
        if !taken(k) {
            map.serialize_entry(k, v).map_err(internal)?;
        }
    }
    map.serialize_entry("prediction_id", &body.prediction_id)
        .map_err(internal)?;
    map.serialize_entry("status", &body.status)
        .map_err(internal)?;
    if let Some(message) = &body.message {
        map.serialize_entry("message", message).map_err(internal)?;
    }
    map.serialize_entry("output", &output).map_err(internal)?;
    map.serialize_entry("error", &body.error)
        .map_err(internal)?;
    let times = [
        ("created_at", Some(body.created_at)),
        ("started_at", body.started_at),
        ("completed_at", body.completed_at),
    ];
    for (k, t) in times {
        map.serialize_entry(k, &wire::Timestamp(t))
            .map_err(internal)?;
    }
    map.serialize_entry("metrics", &body.metrics)
        .map_err(internal)?;
    map.end().map_err(internal)?;
    Ok(out)
}

/// Where a path with trailing slashes on a known route redirects (the route, with the
/// query kept), as the original did (Starlette's `redirect_slashes`): an old client
/// posting to `/predictions/predict/` got a 307 to `/predictions/predict`. Only known
/// routes redirect, so this never points anywhere else.
fn slash_redirect(path: &str, query: Option<&str>) -> Option<(Route, HeaderValue)> {
    let (trimmed, (route, _)) = trailing_slash_route(path)?;
    let location = match query {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_owned(),
    };
    Some((route, HeaderValue::from_str(&location).ok()?))
}

/// The known route that a path with trailing slashes names once they are dropped: the
/// path without them, and the route with its methods.
fn trailing_slash_route(path: &str) -> Option<(&str, (Route, &'static str))> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() || trimmed.len() == path.len() {
        return None;
    }
    Some((trimmed, routes::allowed_methods(trimmed)?))
}

/// 307 (not 301/308 and not 302/303): the client repeats the same method and body.
fn redirect(location: HeaderValue) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    resp.headers_mut().insert(LOCATION, location);
    resp
}

/// A `HEAD` answer: the `GET` answer's headers, with its length when known, and no
/// body. hyper drops the body of a `HEAD` answer on HTTP/1.1 but sends it on HTTP/2,
/// where clients then reset the stream; an event stream's task also ends at once.
fn without_body(resp: Response<Body>) -> Response<Body> {
    use hyper::body::Body as _;
    let (mut parts, body) = resp.into_parts();
    if let Some(len) = body.size_hint().exact() {
        parts
            .headers
            .entry(CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(len));
    }
    Response::from_parts(parts, full(Bytes::new()))
}

fn options_response(allow: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

fn openapi_response() -> Response<Body> {
    let mut resp = Response::new(full(openapi::document_bytes()));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("prefer", HeaderValue::from_str(v).expect("valid header"));
        h
    }

    #[test]
    fn mode_defaults_to_async_and_query_wins_over_prefer() {
        let t = Duration::from_secs(60);
        let none = HeaderMap::new();
        assert_eq!(choose_mode(None, &none, t).ok(), Some((Mode::Async, None)));
        assert_eq!(
            choose_mode(Some("async_mode=false"), &none, t).ok(),
            Some((Mode::Sync(t), None))
        );
        assert_eq!(
            choose_mode(Some("async_mode=true"), &prefer("wait=5"), t).ok(),
            Some((Mode::Async, None))
        );
        assert!(choose_mode(Some("async_mode=maybe"), &none, t).is_err());
    }

    #[test]
    fn prefer_tokens_are_parsed_and_capped() {
        let t = Duration::from_secs(60);
        assert_eq!(
            choose_mode(None, &prefer("respond-async"), t).ok(),
            Some((Mode::Async, Some("respond-async".into())))
        );
        assert_eq!(
            choose_mode(
                None,
                &prefer("handling=lenient, respond-async; x=1, wait=5"),
                t
            )
            .ok(),
            Some((Mode::Sync(Duration::from_secs(5)), Some("wait=5".into())))
        );
        // Cut to the server's limit, and Preference-Applied says so.
        assert_eq!(
            choose_mode(None, &prefer("wait=600"), t).ok(),
            Some((Mode::Sync(t), Some("wait=60".into())))
        );
        assert_eq!(Prefer::parse(&prefer("wait=soon")), Prefer::default());
        assert_eq!(Prefer::parse(&prefer("wait=-1")), Prefer::default());
        // Given twice, the first counts (RFC 7240 §2), even when it is malformed and so
        // ignored, and in a later header too.
        assert_eq!(Prefer::parse(&prefer("wait=1, wait=0")).wait, Some(1));
        assert_eq!(Prefer::parse(&prefer("wait=soon, wait=5")).wait, None);
        let mut two = prefer("respond-async, wait=3");
        two.append(PREFER, HeaderValue::from_static("wait=7"));
        assert_eq!(
            Prefer::parse(&two),
            Prefer {
                respond_async: true,
                wait: Some(3)
            }
        );
        // Too large for a u64 is a long wait, not a malformed one.
        assert_eq!(
            choose_mode(None, &prefer("wait=99999999999999999999999"), t).ok(),
            Some((Mode::Sync(t), Some("wait=60".into())))
        );
    }

    #[test]
    fn trailing_slashes_on_known_routes_redirect_there_and_nowhere_else() {
        let location = |path, query| slash_redirect(path, query).map(|(_, l)| l);
        assert_eq!(
            location("/predictions/predict/", Some("async_mode=false")),
            Some(HeaderValue::from_static(
                "/predictions/predict?async_mode=false"
            ))
        );
        assert_eq!(
            location("/healthz//", None),
            Some(HeaderValue::from_static("/healthz"))
        );
        for path in [
            "/",
            "/healthz",
            "/nope/",
            "//evil.example/",
            "/predictions/",
        ] {
            assert_eq!(location(path, None), None, "{path}");
        }
    }

    #[test]
    fn the_body_must_be_an_object_with_input() {
        assert_eq!(
            parse_input::<String>(br#" {"input": "x", "extra": 1}"#).ok(),
            Some("x".to_owned())
        );
        assert_eq!(
            parse_input::<String>("{\"input\": \"héllo 🙂\"}".as_bytes()).ok(),
            Some("héllo 🙂".to_owned())
        );
        assert_eq!(
            parse_input::<String>(b"{\"input\": \"ok\xff\"}").err(),
            Some(ApiError::MalformedJson(
                "not UTF-8 (invalid byte at offset 13)".into()
            ))
        );
        for (body, error_type) in [
            (&br#"["x"]"#[..], "validation_error"),
            (br#""x""#, "validation_error"),
            (br#"{"text": "x"}"#, "validation_error"),
            (br#"{"input": "#, "malformed_json"),
            (br#"["x""#, "malformed_json"),
            // A wrong type first, a syntax error after it: still not JSON.
            (br#"{"input": 5 garbage"#, "malformed_json"),
            (br#"{"text": "x" garbage"#, "malformed_json"),
            (br#""x" garbage"#, "malformed_json"),
            (br#"["x", 1"#, "malformed_json"),
            (b"", "malformed_json"),
            (br#"{"input": 5}"#, "validation_error"),
            // Not UTF-8, in an ignored field, in the input, or outside an object.
            (b"{\"x\": \"\xff\", \"input\": \"ok\"}", "malformed_json"),
            (b"{\"input\": \"\xc3\"}", "malformed_json"),
            (b"[\"\xff\"]", "malformed_json"),
        ] {
            let e = parse_input::<String>(body).expect_err("refused");
            assert_eq!(
                e.error_type(),
                error_type,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// The former `sync_body`, through `serde_json::Value`: the oracle for the new one.
    /// The sync 200 body: the prediction, with the output's fields also spread at the top
    /// level (a non-object output appears as `result`), so the mock's answer starts with
    /// the original `{"input", "result"}` keys. Prediction fields win a name clash.
    fn sync_body_via_value<I: Serialize, O: Serialize>(
        p: &Prediction<I, O>,
    ) -> Result<Vec<u8>, ApiError> {
        use serde::ser::{SerializeMap, Serializer};
        use serde_json::Value;

        let internal =
            |e: serde_json::Error| ApiError::Internal(format!("serializing a response: {e}"));
        let Value::Object(mut fields) =
            serde_json::to_value(PredictionBody::from(p)).map_err(internal)?
        else {
            return Err(ApiError::Internal(
                "a prediction did not serialize to an object".into(),
            ));
        };
        let spread = match &p.output {
            Some(output) => match serde_json::to_value(&**output).map_err(internal)? {
                Value::Object(map) => map.into_iter().collect(),
                other => vec![("result".to_owned(), other)],
            },
            None => Vec::new(),
        };
        // serde_json's Map is sorted; write keys in a deliberate order instead.
        const ORDER: [&str; 10] = [
            "prediction_id",
            "status",
            "message",
            "output",
            "error",
            "created_at",
            "started_at",
            "completed_at",
            "metrics",
            "input",
        ];
        let mut out = Vec::with_capacity(512);
        let mut ser = serde_json::Serializer::new(&mut out);
        let mut map = ser.serialize_map(None).map_err(internal)?;
        if let Some(input) = fields.remove("input") {
            map.serialize_entry("input", &input).map_err(internal)?;
        }
        for (k, v) in &spread {
            if k != "input" && !fields.contains_key(k) {
                map.serialize_entry(k, v).map_err(internal)?;
            }
        }
        for key in ORDER {
            if let Some(v) = fields.remove(key) {
                map.serialize_entry(key, &v).map_err(internal)?;
            }
        }
        for (k, v) in &fields {
            map.serialize_entry(k, v).map_err(internal)?;
        }
        map.end().map_err(internal)?;
        Ok(out)
    }

    #[derive(Serialize)]
    struct Out {
        input: String,
        result: String,
        status: String,
        zeta: u32,
        alpha: bool,
    }

    fn finished<O: Send + Sync + 'static>(
        output: Option<O>,
        error: Option<mockpredict_core::PredictionError>,
    ) -> Prediction<String, O> {
        let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        Prediction {
            id: PredictionId::new_v4(),
            status: if error.is_some() {
                Status::Failed
            } else {
                Status::Succeeded
            },
            input: mockpredict_core::InputRef::new("in".to_owned()),
            output: output.map(mockpredict_core::OutputRef::new),
            error,
            created_at: t,
            started_at: Some(t),
            completed_at: Some(t + Duration::from_millis(1500)),
            queue_time: Some(Duration::from_micros(250)),
            predict_time: Some(Duration::from_millis(1500)),
        }
    }

    #[test]
    fn the_sync_body_is_written_as_it_was_through_json_values() {
        let mock = finished(
            Some(mockpredict_core::MockOutput {
                input: "in".into(),
                result: "42".into(),
            }),
            None,
        );
        // The mock's fields are in alphabetical order, so even the bytes agree.
        assert_eq!(
            sync_body(&mock).expect("serializes"),
            sync_body_via_value(&mock).expect("serializes")
        );
        let same = |a: Vec<u8>, b: Vec<u8>| {
            let a: serde_json::Value = serde_json::from_slice(&a).expect("json");
            let b: serde_json::Value = serde_json::from_slice(&b).expect("json");
            assert_eq!(a, b);
            a
        };
        let clash = finished(
            Some(Out {
                input: "other".into(),
                result: "r".into(),
                status: "mine".into(),
                zeta: 1,
                alpha: true,
            }),
            None,
        );
        let v = same(
            sync_body(&clash).expect("serializes"),
            sync_body_via_value(&clash).expect("serializes"),
        );
        assert_eq!(v["input"], "in", "the prediction's input wins");
        assert_eq!(v["status"], "succeeded", "prediction fields win a clash");
        assert_eq!(v["zeta"], 1);
        // Spread fields are written as `output` writes them: an f32 keeps its digits.
        let narrow = finished(
            Some(std::collections::BTreeMap::from([("score", 1.1f32)])),
            None,
        );
        let text = String::from_utf8(sync_body(&narrow).expect("serializes")).expect("utf-8");
        assert!(text.contains(r#""score":1.1,"#), "{text}");
        assert!(text.contains(r#""output":{"score":1.1}"#), "{text}");
        let scalar = finished(Some(3u32), None);
        let v = same(
            sync_body(&scalar).expect("serializes"),
            sync_body_via_value(&scalar).expect("serializes"),
        );
        assert_eq!(v["result"], 3);
        let failed = finished::<u32>(
            None,
            Some(mockpredict_core::PredictionError {
                kind: mockpredict_core::FailureKind::Model,
                message: "boom".into(),
            }),
        );
        same(
            sync_body(&failed).expect("serializes"),
            sync_body_via_value(&failed).expect("serializes"),
        );
    }

    #[test]
    fn openmetrics_is_chosen_by_its_rating_in_accept() {
        let accept = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(
                http::header::ACCEPT,
                HeaderValue::from_str(v).expect("a value"),
            );
            prefers_openmetrics(&h)
        };
        // Prometheus's own.
        assert!(accept(
            "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(accept("Application/OpenMetrics-Text"));
        assert!(!accept("application/openmetrics-text;q=0, text/plain"));
        assert!(!accept(
            "text/plain;q=1, application/openmetrics-text;q=0.1"
        ));
        assert!(!accept("*/*"));
        assert!(!prefers_openmetrics(&http::HeaderMap::new()));
    }

    /// hyper copies each request's future into its connection's box, and every
    /// request touches all of it: at 2,912 bytes it cost a submit about 650
    /// instructions and 50 L1 misses (BENCHMARKS.md, "Ninth pass"). A guard against
    /// its growing back (passing the `Request` down by value, an inline sync wait):
    /// generous, since the size moves with rustc and the build profile (944 B
    /// release, 1,000 B debug at the ninth pass).
    #[tokio::test]
    async fn the_request_future_stays_small() {
        let app = App::new(
            mockpredict_core::MockModel::new(),
            QueueConfig::default(),
            ServerConfig::default(),
        )
        .expect("app");
        let req = Request::post("/predictions/predict")
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("request");
        let size = std::mem::size_of_val(&app.handle(req));
        assert!(size <= 1_536, "App::handle's future is {size} bytes");
    }

    #[tokio::test]
    async fn an_app_with_a_cors_entry_that_is_no_origin_is_refused() {
        let cors = Cors::Origins(vec!["https://ok.example".into(), "app.example".into()]);
        let config = ServerConfig::default().cors(cors);
        let err = App::new(
            mockpredict_core::MockModel::new(),
            QueueConfig::default(),
            config,
        )
        .map(|_| ())
        .expect_err("app.example has no scheme");
        assert!(matches!(err, crate::Error::InvalidConfig(_)), "{err:?}");
        assert!(err.to_string().contains("\"app.example\""), "{err}");
    }

    #[test]
    fn constant_bodies_are_what_the_wire_types_serialize_to() {
        let health = |status: &str| {
            serde_json::to_vec(&wire::Health {
                status: status.into(),
            })
            .expect("serializes")
        };
        assert_eq!(wire_static::HEALTH_OK, health("ok"));
        assert_eq!(wire_static::HEALTH_READY, health("ready"));
        let id = PredictionId::new_v4();
        let borrowed = serde_json::to_vec(&AcceptedRef {
            message: wire::ASYNC_MESSAGE,
            prediction_id: id,
            status: Status::Queued,
        })
        .expect("serializes");
        let owned = serde_json::to_vec(&wire::Accepted {
            message: wire::ASYNC_MESSAGE.into(),
            prediction_id: id,
            status: Status::Queued,
        })
        .expect("serializes");
        assert_eq!(borrowed, owned);
        let (body, shared_location) = async_accepted(id);
        assert_eq!(body, owned);
        assert_eq!(shared_location, wire::prediction_path(id).as_str());
        assert_eq!(location(id), wire::prediction_path(id).as_str());
    }

    /// A top-level value that is not an object is named as such, not by the type the
    /// server deserializes into.
    #[test]
    fn a_body_that_is_not_an_object_says_so() {
        for body in [
            &br#""x""#[..],
            b"5",
            b"null",
            br#"["x"]"#,
            br#"["x", 1]"#,
            b"[]",
        ] {
            let e = parse_input::<String>(body).expect_err("refused");
            assert_eq!(
                e,
                ApiError::Validation(
                    "invalid request body: expected a JSON object such as {\"input\": ...}".into()
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// The server decodes no content coding: a coded body is refused (415), whatever
    /// its content type; `identity` is no coding.
    #[test]
    fn content_codings_other_than_identity_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for accepted in ["identity", " Identity ", ""] {
            h.insert(CONTENT_ENCODING, HeaderValue::from_static(accepted));
            assert!(check_content_type(&h).is_ok(), "{accepted:?}");
        }
        for refused in ["gzip", "br", "identity, gzip", "x-unknown"] {
            h.insert(CONTENT_ENCODING, HeaderValue::from_static(refused));
            assert_eq!(
                check_content_type(&h),
                Err(ApiError::UnsupportedEncoding(refused.into())),
                "{refused:?}"
            );
        }
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        h.append(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(
            check_content_type(&h).is_err(),
            "a second header counts too"
        );
    }

    /// hyper decodes `chunked` and passes any other transfer coding on undecoded: such
    /// a body is refused (415) as a content-coded one is.
    #[test]
    fn transfer_codings_other_than_chunked_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("Chunked"));
        assert!(check_content_type(&h).is_ok());
        for refused in ["gzip, chunked", "deflate,chunked", "x-unknown"] {
            h.insert(TRANSFER_ENCODING, HeaderValue::from_static(refused));
            assert_eq!(
                check_content_type(&h),
                Err(ApiError::UnsupportedTransferCoding(refused.into())),
                "{refused:?}"
            );
        }
    }

    /// `Content-Type` is a singleton: a second one makes the body's type unknown,
    /// whichever comes first.
    #[test]
    fn two_content_types_are_refused() {
        for (first, second) in [
            ("application/json", "text/plain"),
            ("text/plain", "application/json"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(first));
            h.append(CONTENT_TYPE, HeaderValue::from_static(second));
            assert_eq!(
                check_content_type(&h),
                Err(ApiError::TwoContentTypes(format!(
                    "{first:?} and {second:?}"
                )))
            );
        }
    }

    /// Percent-escapes in a path ID are decoded (`%2D` is `-`); what is still not a
    /// UUID is an unknown ID.
    #[test]
    fn path_ids_are_percent_decoded() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let expected: PredictionId = id.parse().expect("a UUID");
        assert_eq!(parse_id(&id.replace('-', "%2D")), Ok(expected));
        assert_eq!(parse_id(&format!("%7B{id}%7D")), Ok(expected));
        for bad in ["nope", "%zz", &id.replace('-', "%2")] {
            assert_eq!(parse_id(bad), Err(ApiError::PredictionNotFound), "{bad:?}");
        }
    }

    #[test]
    fn content_types_other_than_json_are_refused() {
        let mut h = HeaderMap::new();
        assert!(check_content_type(&h).is_ok());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(check_content_type(&h).is_ok());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/merge-patch+json"),
        );
        assert!(check_content_type(&h).is_ok());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(" Application/JSON ;charset=utf-8"),
        );
        assert!(check_content_type(&h).is_ok());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("APPLICATION/LD+JSON"),
        );
        assert!(check_content_type(&h).is_ok());
        for refused in ["text/plain", "application/jsonx", "text/json", "+json", ""] {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(refused));
            assert!(check_content_type(&h).is_err(), "{refused:?}");
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("Text/Plain; x=1"));
        assert_eq!(
            check_content_type(&h),
            Err(ApiError::UnsupportedMediaType("Text/Plain; x=1".into()))
        );
    }

    #[test]
    fn query_params_and_booleans() {
        assert_eq!(
            query_param(Some("a=1&wait=2.5"), "wait").as_deref(),
            Some("2.5")
        );
        assert_eq!(
            query_param(Some("async_mode"), "async_mode").as_deref(),
            Some("")
        );
        assert_eq!(query_param(None, "wait"), None);
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool(""), None);
    }

    #[test]
    fn query_keys_and_values_are_percent_decoded() {
        let q = Some("async%5Fmode=%66alse&wait=%31");
        assert_eq!(query_param(q, "async_mode").as_deref(), Some("false"));
        assert_eq!(query_param(q, "wait").as_deref(), Some("1"));
        // Malformed escapes stay as they are (and then fail validation).
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "\u{2713}");
    }

    #[test]
    fn wait_seconds_are_validated_and_capped() {
        let cap = Duration::from_secs(60);
        for bad in ["-1", "soon", "NaN", ""] {
            assert!(parse_seconds(bad, "wait", cap).is_err(), "{bad}");
        }
        assert_eq!(
            parse_seconds("0.25", "wait", cap).ok(),
            Some(Duration::from_millis(250))
        );
        for huge in ["120", "1e300", "inf"] {
            assert_eq!(parse_seconds(huge, "wait", cap).ok(), Some(cap), "{huge}");
        }
    }
}
