//! A typed async client for the server's HTTP API (the protocol's other half, built on
//! the same [`wire`](crate::wire) types), over hyper-util's HTTP/1 client.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mockpredict_core::{MockOutput, PredictionId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::wire::{Accepted, ErrorBody, Health, PredictRequest, PredictionBody, RootInfo};

/// The boxed cause of a transport failure (connection refused, DNS, reset...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of every client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a client call failed. Every variant names the URL it was calling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The base URL is not an `http://host[:port][/prefix]` URL.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request never got an HTTP answer: connection refused, DNS failure, reset.
    /// The cause chain (`{:#}` with anyhow, or [`std::error::Error::source`]) says which.
    #[error("could not reach the server at {url}")]
    Connect {
        /// The URL called.
        url: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// No answer within the client's time limit.
    #[error("no answer from {url} within {}", humantime::format_duration(*after))]
    Timeout {
        /// The URL called.
        url: String,
        /// The limit that passed.
        after: Duration,
    },
    /// 401: the server requires a bearer token and none, or the wrong one, was sent.
    #[error("{url} refused the request (401 unauthorized): {message}; check the API token")]
    Unauthorized {
        /// The URL called.
        url: String,
        /// The server's message.
        message: String,
        /// The server's `error_type` (`unauthorized`), when its body had one.
        error_type: Option<String>,
    },
    /// 404: unknown or expired prediction ID (`error_type` `not_found`), or a route
    /// this server does not have (`route_not_found`: an older server, or a wrong
    /// path prefix in the base URL).
    #[error("{url}: not found (404): {message}")]
    NotFound {
        /// The URL called.
        url: String,
        /// The server's message.
        message: String,
        /// The server's `error_type`, when its body had one.
        error_type: Option<String>,
    },
    /// 429: the server's queue is full.
    #[error("{url}: the server's queue is full (429): {message}{}",
        retry_hint(message, *retry_after))]
    QueueFull {
        /// The URL called.
        url: String,
        /// The server's `Retry-After` hint.
        retry_after: Option<Duration>,
        /// The server's message.
        message: String,
    },
    /// Any other error status, with the server's error body.
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The server's `error_type`, when its body had one.
        error_type: Option<String>,
        /// The server's message (or the raw body).
        message: String,
    },
    /// The server answered something this client does not understand.
    #[error("bad response from {url}: {reason}")]
    BadResponse {
        /// The URL called.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl Error {
    /// Whether the same call may well succeed if made again shortly: the server could
    /// not be reached or did not answer in time, or it (or a gateway in front of it)
    /// answered 429, 502, 503 or 504. [`Client::wait`] retries these on its own.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } | Error::QueueFull { .. } => true,
            Error::Status { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }
}

/// What a synchronous prediction request got back.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncOutcome<I, O> {
    /// 200: it finished (check [`status`](PredictionBody::status): a failed prediction
    /// is an answer too).
    Finished(PredictionBody<I, O>),
    /// 202: it outlasted the wait; poll or [`wait`](Client::wait) on its ID.
    Pending(Accepted),
}

/// A typed client for a mockpredict server.
///
/// `I` and `O` are the served model's input and output types; [`Client::new`] is for
/// the mock (`String` in, [`MockOutput`] out), [`Client::for_model`] for any other.
/// The handle is cheap to clone and reuses connections (HTTP/1.1 keep-alive).
///
/// ```no_run
/// # async fn demo() -> Result<(), mockpredict_server::client::Error> {
/// use std::time::Duration;
/// use mockpredict_server::client::Client;
///
/// let client = Client::new("http://127.0.0.1:8000")?.with_token("s3cret");
/// let id = client.predict_async(&"a photo of a cat".to_owned()).await?;
/// let done = client.wait(id, Some(Duration::from_secs(60))).await?;
/// if let Some(out) = done.output {
///     println!("{id}: {}", out.result);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Client<I = String, O = MockOutput> {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// `http://host:port` plus any path prefix, without a trailing slash.
    base: String,
    token: Option<HeaderValue>,
    timeout: Duration,
    long_poll: Duration,
    retry_window: Duration,
    /// Whether a server has answered this client (or a clone of it) yet: a refused
    /// connection after that is a server going away, not a wrong address.
    answered: Arc<AtomicBool>,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O> Clone for Client<I, O> {
    fn clone(&self) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: self.token.clone(),
            timeout: self.timeout,
            long_poll: self.long_poll,
            retry_window: self.retry_window,
            answered: Arc::clone(&self.answered),
            _types: PhantomData,
        }
    }
}

impl<I, O> std::fmt::Debug for Client<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: show only whether there is one.
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("long_poll", &self.long_poll)
            .field("retry_window", &self.retry_window)
            .finish()
    }
}

impl Client {
    /// A client for a server running the mock model.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] unless `base_url` is `http://host[:port][/prefix]`
    /// (`https` is refused: this client has no TLS).
    pub fn new(base_url: &str) -> Result<Self> {
        Self::for_model(base_url)
    }
}

/// How long [`Client::predict_sync`] asks the server to hold a request when its
/// caller gives no wait: the server's default sync limit.
const DEFAULT_SYNC_WAIT: Duration = Duration::from_secs(60);

impl<I, O> Client<I, O> {
    /// A client for a server serving a model with input `I` and output `O`.
    ///
    /// # Errors
    ///
    /// As [`Client::new`].
    pub fn for_model(base_url: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = base_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid(
                    "https is not supported: this client speaks plain HTTP (no TLS); \
                     put a TLS-terminating proxy in front or use http://",
                ));
            }
            Some(other) => return Err(invalid(&format!("unsupported scheme {other:?}"))),
            None => return Err(invalid("missing scheme; expected http://host:port")),
        }
        let Some(authority) = uri.authority() else {
            return Err(invalid("missing host"));
        };
        if authority.as_str().contains('@') {
            return Err(invalid(
                "a base URL takes no user:password@ (send an API token with the client's token)",
            ));
        }
        // A port, if written, is a number from 1 to 65535 (`http://h:` means the default).
        let after_host = authority
            .as_str()
            .rsplit_once(']')
            .map_or(authority.as_str(), |(_, rest)| rest);
        if let Some((_, port)) = after_host.rsplit_once(':') {
            if !port.is_empty() && !port.parse::<u16>().is_ok_and(|p| p > 0) {
                return Err(invalid(&format!(
                    "invalid port {port:?}: expected a number from 1 to 65535"
                )));
            }
        }
        if uri.query().is_some() {
            return Err(invalid("a base URL takes no query string"));
        }
        // `Uri` drops a fragment silently, and every path would then follow it.
        if base_url.contains('#') {
            return Err(invalid("a base URL takes no #fragment"));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        connector.set_nodelay(true);
        Ok(Self {
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
            base: base_url.trim_end_matches('/').to_owned(),
            token: None,
            timeout: Duration::from_secs(30),
            long_poll: Duration::from_secs(30),
            retry_window: Duration::from_secs(30),
            answered: Arc::new(AtomicBool::new(false)),
            _types: PhantomData,
        })
    }

    /// Sends `Authorization: Bearer <token>` on every request.
    ///
    /// A token that is not a valid header value (a newline, say) is sent as nothing,
    /// so the server answers 401 rather than the client failing elsewhere.
    #[must_use]
    pub fn with_token(mut self, token: impl AsRef<str>) -> Self {
        self.token = HeaderValue::from_str(&format!("Bearer {}", token.as_ref()))
            .ok()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        self
    }

    /// How long a request may take beyond any server-side wait it asked for
    /// (default 30 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest single long-poll request [`wait`](Self::wait) makes (default 30 s);
    /// longer waits are a loop of these. Keep it under the server's long-poll cap.
    #[must_use]
    pub fn with_long_poll(mut self, long_poll: Duration) -> Self {
        self.long_poll = long_poll.max(Duration::from_millis(100));
        self
    }

    /// How long [`wait`](Self::wait) keeps retrying [transient](Error::is_transient)
    /// failures in a row before it returns the last one (default 30 s; zero: never
    /// retry). A server restarting behind a gateway, or a dropped connection, then
    /// costs a wait nothing.
    #[must_use]
    pub fn with_retry_window(mut self, window: Duration) -> Self {
        self.retry_window = window;
        self
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /`: the server's message, version and model.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn info(&self) -> Result<RootInfo> {
        let (url, status, _, body) = self.send(Method::GET, "/", None, None, None).await?;
        expect(&url, status, &body, &[StatusCode::OK])?;
        decode(&url, &body)
    }

    /// `GET /healthz`: whether the process is alive.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn health(&self) -> Result<Health> {
        let (url, status, _, body) = self.send(Method::GET, "/healthz", None, None, None).await?;
        expect(&url, status, &body, &[StatusCode::OK])?;
        decode(&url, &body)
    }

    /// `GET /readyz`: `true` when the server wants new traffic; `false` (503) once it
    /// is shutting down (during a drain delay it still accepts predictions, to give a
    /// load balancer time to stop sending them) or its backend is unreachable.
    ///
    /// # Errors
    ///
    /// See [`Error`]; a 503 is `Ok(false)`, not an error.
    pub async fn ready(&self) -> Result<bool> {
        let (url, status, _, body) = self.send(Method::GET, "/readyz", None, None, None).await?;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return Ok(false);
        }
        expect(&url, status, &body, &[StatusCode::OK])?;
        Ok(true)
    }

    /// `GET /predictions/predict/{id}`: the prediction now, finished or not.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown or expired ID; see [`Error`].
    pub async fn get(&self, id: PredictionId) -> Result<PredictionBody<I, O>>
    where
        I: DeserializeOwned,
        O: DeserializeOwned,
    {
        self.poll(id, None).await
    }

    /// Waits until the prediction finishes or `timeout` passes (`None`: no limit) and
    /// returns it then; check [`PredictionBody::is_finished`] to tell the two apart.
    ///
    /// Uses the server's long-poll (`?wait=`), one request per
    /// [`long_poll`](Self::with_long_poll) period, so nothing spins while it waits.
    ///
    /// [Transient](Error::is_transient) failures are retried, with pauses from 100 ms
    /// doubling to 2 s, for up to the [retry window](Self::with_retry_window) in a
    /// row (and never past `timeout`). A refused or reset connection counts as
    /// transient only once a server has answered this client (or a clone of it): a
    /// wrong address still fails at once. A 429's `Retry-After` is honoured (within
    /// the window).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown or expired ID (including one that a
    /// restarted in-memory server has forgotten); the last transient error once the
    /// retry window has passed; see [`Error`].
    pub async fn wait(
        &self,
        id: PredictionId,
        timeout: Option<Duration>,
    ) -> Result<PredictionBody<I, O>>
    where
        I: DeserializeOwned,
        O: DeserializeOwned,
    {
        // A timeout too long to add to now is no limit.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut backoff = Duration::from_millis(100);
        let mut retries = Retries::new(self.retry_window);
        if self.answered.load(Ordering::Relaxed) {
            retries.answered();
        }
        loop {
            let chunk = match deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .min(self.long_poll),
                None => self.long_poll,
            };
            let asked = Instant::now();
            let body = match self.poll(id, Some(chunk)).await {
                Ok(body) => {
                    retries.answered();
                    body
                }
                Err(e) => {
                    let pause = retries.failed(&e, deadline).ok_or(e)?;
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            if body.is_finished() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(body);
            }
            // A server that answers at once (an old server without long-poll) must
            // not turn this into a tight loop: back off between such answers. One that
            // held the request for a while is long-polling under a lower cap of its
            // own (`--max-wait`): ask again at once, or a result that lands during a
            // pause would be seen up to 2 s late.
            if asked.elapsed() < (chunk / 2).min(Duration::from_millis(200)) {
                let pause = match deadline {
                    Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                    None => backoff,
                };
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }

    /// `POST /predictions/predict/{id}/cancel`: the prediction after the cancel
    /// (`canceled`, or the terminal status it had already reached).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown or expired ID; see [`Error`].
    pub async fn cancel(&self, id: PredictionId) -> Result<PredictionBody<I, O>>
    where
        I: DeserializeOwned,
        O: DeserializeOwned,
    {
        let path = format!("/predictions/predict/{id}/cancel");
        let (url, status, _, body) = self.send(Method::POST, &path, None, None, None).await?;
        expect(&url, status, &body, &[StatusCode::OK])?;
        decode(&url, &body)
    }

    /// Submits a prediction in async mode and returns its ID at once (see
    /// [`submit`](Self::submit) for the whole answer).
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when the server's queue is full; see [`Error`].
    pub async fn predict_async(&self, input: &I) -> Result<PredictionId>
    where
        I: Serialize,
    {
        self.submit(input).await.map(|a| a.prediction_id)
    }

    /// Submits a prediction in async mode and returns the server's whole 202 answer:
    /// the ID, the status when admitted (`queued`) and the server's message.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when the server's queue is full; see [`Error`].
    pub async fn submit(&self, input: &I) -> Result<Accepted>
    where
        I: Serialize,
    {
        let body = encode(&self.base, input)?;
        let (url, status, _, body) = self
            .send(
                Method::POST,
                "/predictions/predict?async_mode=true",
                Some(body),
                None,
                None,
            )
            .await?;
        expect(&url, status, &body, &[StatusCode::ACCEPTED])?;
        decode(&url, &body)
    }

    /// Submits a prediction in sync mode: the server holds the request until it
    /// finishes or `wait` passes (`None`: 60 s, the server's default sync limit; a
    /// server with a lower limit answers sooner), then answers with the prediction or
    /// with its ID to wait on.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when the server's queue is full; see [`Error`].
    pub async fn predict_sync(&self, input: &I, wait: Option<Duration>) -> Result<SyncOutcome<I, O>>
    where
        I: Serialize + DeserializeOwned,
        O: DeserializeOwned,
    {
        let body = encode(&self.base, input)?;
        // Always a wait of our own, so that a server that never answers cannot hold
        // the request forever.
        let wait = wait.unwrap_or(DEFAULT_SYNC_WAIT);
        let prefer = format!("wait={}", wait.as_secs().max(1));
        let limit = wait.saturating_add(self.timeout);
        let (url, status, _, body) = self
            .send(
                Method::POST,
                "/predictions/predict?async_mode=false",
                Some(body),
                Some(&prefer),
                Some(Some(limit)),
            )
            .await?;
        expect(&url, status, &body, &[StatusCode::OK, StatusCode::ACCEPTED])?;
        if status == StatusCode::OK {
            Ok(SyncOutcome::Finished(decode(&url, &body)?))
        } else {
            Ok(SyncOutcome::Pending(decode(&url, &body)?))
        }
    }

    async fn poll(&self, id: PredictionId, wait: Option<Duration>) -> Result<PredictionBody<I, O>>
    where
        I: DeserializeOwned,
        O: DeserializeOwned,
    {
        let path = match wait {
            Some(w) if !w.is_zero() => {
                format!("/predictions/predict/{id}?wait={:.3}", w.as_secs_f64())
            }
            _ => format!("/predictions/predict/{id}"),
        };
        let limit = Some(wait.unwrap_or_default().saturating_add(self.timeout));
        let (url, status, _, body) = self
            .send(Method::GET, &path, None, None, Some(limit))
            .await?;
        expect(&url, status, &body, &[StatusCode::OK, StatusCode::ACCEPTED])?;
        decode(&url, &body)
    }

    /// Builds one request to `path` under the base URL.
    fn request(
        &self,
        method: Method,
        path: &str,
        json: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<(String, Request<Full<Bytes>>)> {
        let url = format!("{}{}", self.base, path);
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::InvalidUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(token) = &self.token {
            req = req.header(AUTHORIZATION, token.clone());
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let body = match json {
            Some(bytes) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| Error::InvalidUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        Ok((url, req))
    }

    /// Sends one request and reads the whole answer. `limit`: `None` for the default
    /// timeout, `Some(None)` for none, `Some(Some(d))` for `d`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<Bytes>,
        prefer: Option<&str>,
        limit: Option<Option<Duration>>,
    ) -> Result<(String, StatusCode, http::HeaderMap, Bytes)> {
        let prefer: Vec<(&str, &str)> = prefer.map(|p| ("prefer", p)).into_iter().collect();
        let (url, req) = self.request(method, path, json, &prefer)?;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| Error::Connect {
                url: url.clone(),
                source: Box::new(e),
            })?;
            self.answered.store(true, Ordering::Relaxed);
            let (parts, body) = resp.into_parts();
            let bytes = read_body(&url, body).await?;
            Ok::<_, Error>((parts.status, parts.headers, bytes))
        };
        let limit = limit.unwrap_or(Some(self.timeout));
        let (status, headers, bytes) = match limit {
            Some(limit) => {
                tokio::time::timeout(limit, exchange)
                    .await
                    .map_err(|_| Error::Timeout {
                        url: url.clone(),
                        after: limit,
                    })??
            }
            None => exchange.await?,
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(Error::QueueFull {
                message: error_message(&bytes).0,
                url,
                retry_after,
            });
        }
        Ok((url, status, headers, bytes))
    }

    /// `GET /predictions/predict/{id}/events`: follows the prediction's status
    /// changes as they happen, over one streamed response (Server-Sent Events).
    ///
    /// Each [`Events::next`] returns the prediction as of one change; the last one
    /// is terminal (succeeded, failed or canceled) and the stream closes after it.
    /// The first event is the status when the stream opened, so nothing is missed.
    ///
    /// ```no_run
    /// # async fn demo(client: mockpredict_server::client::Client,
    /// #     id: mockpredict_core::PredictionId) -> mockpredict_server::client::Result<()> {
    /// let mut events = client.events(id).await?;
    /// while let Some(p) = events.next().await? {
    ///     println!("{}", p.status); // queued, processing, succeeded
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown or expired ID (or, with `error_type`
    /// `route_not_found`, a server without event streams); see [`Error`].
    pub async fn events(&self, id: PredictionId) -> Result<Events<I, O>> {
        let path = format!("/predictions/predict/{id}/events");
        let (url, req) = self.request(Method::GET, &path, None, &[("accept", EVENT_STREAM)])?;
        let opened = async {
            let resp = self.http.request(req).await.map_err(|e| Error::Connect {
                url: url.clone(),
                source: Box::new(e),
            })?;
            self.answered.store(true, Ordering::Relaxed);
            let (parts, body) = resp.into_parts();
            if parts.status != StatusCode::OK {
                let bytes = read_body(&url, body).await?;
                return Err(status_error(&url, parts.status, &bytes));
            }
            Ok::<_, Error>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, opened)
            .await
            .map_err(|_| Error::Timeout {
                url: url.clone(),
                after: self.timeout,
            })??;
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with(EVENT_STREAM) {
            return Err(Error::BadResponse {
                url,
                reason: format!("expected {EVENT_STREAM}, got content type {content_type:?}"),
            });
        }
        Ok(Events {
            url,
            body: Some(body),
            parser: SseParser::default(),
            idle: self.timeout,
            _types: PhantomData,
        })
    }
}

/// The media type of an event stream.
const EVENT_STREAM: &str = "text/event-stream";

/// A prediction's status changes, as [`Client::events`] streams them.
///
/// Reading is incremental: each [`next`](Self::next) parses only as much of the
/// stream as one event needs. Dropping it closes the connection.
pub struct Events<I = String, O = MockOutput> {
    url: String,
    /// `None` once the stream ended or its terminal event was read.
    body: Option<Incoming>,
    parser: SseParser,
    /// The longest silence allowed between two chunks. The server sends a
    /// keep-alive comment every 15 s by default, so a longer silence means a dead
    /// connection, not a slow model.
    idle: Duration,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O> std::fmt::Debug for Events<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("url", &self.url)
            .field("open", &self.body.is_some())
            .finish_non_exhaustive()
    }
}

impl<I: DeserializeOwned, O: DeserializeOwned> Events<I, O> {
    /// The prediction as of the next status change; `Ok(None)` after the terminal
    /// one, or when the server ended the stream before it (shutting down, say:
    /// [`Client::wait`] can take over from there).
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the connection breaks, [`Error::Timeout`] after a
    /// silence longer than the client's timeout, [`Error::BadResponse`] for an
    /// event whose data is not a prediction, [`Error::Status`] (500, with the
    /// server's `error_type`) for the server's `server_error` event (it could not
    /// write the prediction).
    pub async fn next(&mut self) -> Result<Option<PredictionBody<I, O>>> {
        loop {
            let ended = self.body.is_none();
            match self.parser.next_event(ended) {
                Ok(Some(data)) if self.parser.last_was_error => {
                    // The server could not write the prediction (its output, say).
                    self.body = None;
                    return Err(status_error(
                        &self.url,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        data.as_bytes(),
                    ));
                }
                Ok(Some(data)) => {
                    let p: PredictionBody<I, O> = decode(&self.url, data.as_bytes())?;
                    if p.is_finished() {
                        // Nothing follows a terminal event: close the connection now.
                        self.body = None;
                        self.parser = SseParser::default();
                    }
                    return Ok(Some(p));
                }
                Ok(None) if ended => return Ok(None),
                Ok(None) => {}
                Err(reason) => {
                    self.body = None;
                    return Err(Error::BadResponse {
                        url: self.url.clone(),
                        reason,
                    });
                }
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            match tokio::time::timeout(self.idle, body.frame()).await {
                Err(_) => {
                    self.body = None;
                    return Err(Error::Timeout {
                        url: self.url.clone(),
                        after: self.idle,
                    });
                }
                Ok(None) => self.body = None,
                Ok(Some(Err(e))) => {
                    self.body = None;
                    return Err(Error::Connect {
                        url: self.url.clone(),
                        source: Box::new(e),
                    });
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.parser.push(&data);
                    }
                }
            }
        }
    }
}

/// An incremental `text/event-stream` parser (the WHATWG rules this client needs):
/// lines end in LF, CRLF or CR; `:` starts a comment; `data` lines join with LF; a
/// blank line dispatches the event; an event without data is skipped.
#[derive(Debug, Default)]
struct SseParser {
    buf: Vec<u8>,
    data: Option<String>,
    /// Whether the event being read is the server's `server_error`.
    server_error: bool,
    /// Whether the last event returned was a `server_error`.
    last_was_error: bool,
}

impl SseParser {
    /// Longest line accepted; beyond it the stream is not one this server writes.
    const MAX_LINE: usize = 16 << 20;

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The data of the next complete event in what was pushed, if there is one.
    /// `ended`: no more bytes will come, so a final CR is a whole line ending.
    fn next_event(&mut self, ended: bool) -> Result<Option<String>, String> {
        while let Some(line) = self.next_line(ended) {
            if line.is_empty() {
                let server_error = std::mem::take(&mut self.server_error);
                if let Some(data) = self.data.take() {
                    self.last_was_error = server_error;
                    return Ok(Some(data));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            // `event` repeats the status that the data carries, but for the server's
            // `server_error`; `id` and `retry` matter only to reconnecting browsers.
            if field == "event" {
                self.server_error = value == "server_error";
            } else if field == "data" {
                let data = self.data.get_or_insert_with(String::new);
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
        }
        if self.buf.len() > Self::MAX_LINE {
            return Err(format!(
                "an event-stream line longer than {} bytes",
                Self::MAX_LINE
            ));
        }
        Ok(None)
    }

    fn next_line(&mut self, ended: bool) -> Option<String> {
        let at = self.buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
        let mut end = at + 1;
        if self.buf[at] == b'\r' {
            match self.buf.get(at + 1) {
                Some(b'\n') => end += 1,
                // The LF of a CRLF may be in the next chunk.
                None if !ended => return None,
                _ => {}
            }
        }
        let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
        self.buf.drain(..end);
        Some(line)
    }
}

fn encode<I: Serialize>(base: &str, input: &I) -> Result<Bytes> {
    serde_json::to_vec(&PredictRequest { input })
        .map(Bytes::from)
        .map_err(|e| Error::BadResponse {
            url: base.to_owned(),
            reason: format!("could not encode the input as JSON: {e}"),
        })
}

/// The server's `(error, error_type)` from an error body, or the raw text.
fn error_message(body: &[u8]) -> (String, Option<String>) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.error, Some(e.error_type).filter(|t| !t.is_empty())),
        Err(_) => (foreign_body(body), None),
    }
}

/// A short account of an error body that is not ours (another server's HTML page,
/// say): its first line, cut to 200 characters, and its size when there was more.
fn foreign_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let first = text.lines().next().unwrap_or_default();
    let mut short: String = first.chars().take(200).collect();
    if short.len() < text.len() {
        short.push_str(&format!(
            " … ({} bytes, not a mockpredict error body)",
            body.len()
        ));
    }
    short
}

/// Turns any status not in `ok` into the matching [`Error`].
fn expect(url: &str, status: StatusCode, body: &[u8], ok: &[StatusCode]) -> Result<()> {
    if ok.contains(&status) {
        return Ok(());
    }
    Err(status_error(url, status, body))
}

/// The [`Error`] for an answer with an unexpected `status`.
fn status_error(url: &str, status: StatusCode, body: &[u8]) -> Error {
    let (message, error_type) = error_message(body);
    let url = url.to_owned();
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized {
            url,
            message,
            error_type,
        },
        StatusCode::NOT_FOUND => Error::NotFound {
            url,
            message,
            error_type,
        },
        s if s.is_success() => Error::BadResponse {
            url,
            reason: format!("unexpected status {s}"),
        },
        s => Error::Status {
            url,
            status: s.as_u16(),
            error_type,
            message,
        },
    }
}

/// Reads a whole response body; a transport failure mid-body is a `Connect` error.
async fn read_body(url: &str, body: hyper::body::Incoming) -> Result<Bytes> {
    Ok(body
        .collect()
        .await
        .map_err(|e| Error::Connect {
            url: url.to_owned(),
            source: Box::new(e),
        })?
        .to_bytes())
}

fn decode<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::BadResponse {
        url: url.to_owned(),
        reason: format!("unexpected JSON body: {e}"),
    })
}

/// [`Client::wait`]'s account of failures in a row: whether to retry, and after what
/// pause.
struct Retries {
    window: Duration,
    /// Whether the server has answered since the wait began.
    reached: bool,
    /// When the current run of failures began.
    failing_since: Option<Instant>,
    pause: Duration,
}

impl Retries {
    const FIRST_PAUSE: Duration = Duration::from_millis(100);
    const MAX_PAUSE: Duration = Duration::from_secs(2);

    fn new(window: Duration) -> Self {
        Self {
            window,
            reached: false,
            failing_since: None,
            pause: Self::FIRST_PAUSE,
        }
    }

    /// An answer: the run of failures, if any, is over.
    fn answered(&mut self) {
        self.reached = true;
        self.failing_since = None;
        self.pause = Self::FIRST_PAUSE;
    }

    /// The pause before retrying after `err`, or `None` to give up: not transient; a
    /// connection failure before the server ever answered (a wrong address fails at
    /// once); the window or the wait's `deadline` passed.
    fn failed(&mut self, err: &Error, deadline: Option<Instant>) -> Option<Duration> {
        if !err.is_transient() || (!self.reached && matches!(err, Error::Connect { .. })) {
            return None;
        }
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        let window_left = self.window.checked_sub(now.duration_since(since))?;
        let deadline_left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
        if window_left.is_zero() || deadline_left.is_zero() {
            return None;
        }
        let asked = match err {
            Error::QueueFull {
                retry_after: Some(after),
                ..
            } => *after,
            _ => Duration::ZERO,
        };
        let pause = self.pause.max(asked).min(window_left).min(deadline_left);
        self.pause = (self.pause * 2).min(Self::MAX_PAUSE);
        tracing::debug!(error = %err, pause = ?pause, "wait: retrying a transient failure");
        Some(pause)
    }
}

/// The `Retry-After` hint for a 429 message, unless the server's message says it
/// already (mockpredict's own does).
fn retry_hint(message: &str, retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) if !message.contains("retry after") => format!("; retry after {}s", d.as_secs()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Error {
        Error::Connect {
            url: "u".into(),
            source: "connection refused".into(),
        }
    }

    fn status(status: u16) -> Error {
        Error::Status {
            url: "u".into(),
            status,
            error_type: None,
            message: "m".into(),
        }
    }

    #[test]
    fn transient_errors_are_those_a_retry_may_cure() {
        assert!(refused().is_transient());
        let timeout = Error::Timeout {
            url: "u".into(),
            after: Duration::from_secs(1),
        };
        let full = Error::QueueFull {
            url: "u".into(),
            retry_after: None,
            message: "m".into(),
        };
        assert!(timeout.is_transient() && full.is_transient());
        for s in [502, 503, 504] {
            assert!(status(s).is_transient(), "{s}");
        }
        for s in [400, 422, 500, 501] {
            assert!(!status(s).is_transient(), "{s}");
        }
        let not_found = Error::NotFound {
            url: "u".into(),
            message: "m".into(),
            error_type: Some("not_found".into()),
        };
        assert!(!not_found.is_transient());
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_within_the_window_and_start_over_after_an_answer() {
        let mut r = Retries::new(Duration::from_secs(5));
        // Nothing has answered yet: a refused connection is a wrong address.
        assert_eq!(r.failed(&refused(), None), None);
        // A gateway's 503 is worth retrying even before any answer.
        assert_eq!(
            r.failed(&status(503), None),
            Some(Duration::from_millis(100))
        );
        r.answered();
        let mut pauses = Vec::new();
        while let Some(p) = r.failed(&refused(), None) {
            pauses.push(p.as_millis());
            tokio::time::advance(p).await;
        }
        // 100 ms doubling to 2 s, the last cut to what is left of the 5 s window.
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 1900]);
        r.answered();
        assert_eq!(r.failed(&refused(), None), Some(Duration::from_millis(100)));
        // Never past the wait's own deadline; never for what a retry cannot cure.
        let soon = Instant::now() + Duration::from_millis(30);
        assert_eq!(
            r.failed(&refused(), Some(soon)),
            Some(Duration::from_millis(30))
        );
        assert_eq!(r.failed(&status(500), None), None);
        assert_eq!(
            Retries::new(Duration::ZERO).failed(&status(503), None),
            None
        );
    }

    /// A 429's Retry-After is waited out, within the window.
    #[tokio::test(start_paused = true)]
    async fn a_retry_after_is_waited_out_within_the_window() {
        let full = |after: u64| Error::QueueFull {
            url: "u".into(),
            retry_after: Some(Duration::from_secs(after)),
            message: "m".into(),
        };
        let mut r = Retries::new(Duration::from_secs(5));
        assert_eq!(r.failed(&full(3), None), Some(Duration::from_secs(3)));
        assert_eq!(r.failed(&full(60), None), Some(Duration::from_secs(5)));
    }

    #[test]
    fn the_retry_hint_is_said_once() {
        let d = Some(Duration::from_secs(3));
        assert_eq!(retry_hint("queue is full; retry after 3s", d), "");
        assert_eq!(retry_hint("busy", d), "; retry after 3s");
        assert_eq!(retry_hint("busy", None), "");
    }

    #[test]
    fn the_event_parser_reads_events_split_anywhere() {
        let stream = ": keep-alive\n\nid: 0\r\nevent: queued\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n\
                      event: x\rdata:2\r\r";
        // Every split point, including between the CR and LF of a CRLF.
        for split in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got = Vec::new();
            p.push(&stream.as_bytes()[..split]);
            while let Some(data) = p.next_event(false).expect("parses") {
                got.push(data);
            }
            p.push(&stream.as_bytes()[split..]);
            while let Some(data) = p.next_event(true).expect("parses") {
                got.push(data);
            }
            assert_eq!(got, ["{\"a\":\n1}", "2"], "split at {split}");
        }
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_dispatched() {
        let mut p = SseParser::default();
        p.push(b"data: cut off\n");
        assert_eq!(p.next_event(true), Ok(None));
    }

    #[test]
    fn base_url_must_be_plain_http() {
        assert!(Client::new("http://127.0.0.1:8000/").is_ok());
        assert!(matches!(
            Client::new("https://example.com"),
            Err(Error::InvalidUrl { reason, .. }) if reason.contains("no TLS")
        ));
        assert!(matches!(
            Client::new("localhost:8000"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            Client::new("not a url"),
            Err(Error::InvalidUrl { .. })
        ));
        for (url, says) in [
            ("http://127.0.0.1:8000#frag", "fragment"),
            ("http://user:pw@127.0.0.1:8000", "user:password@"),
            ("http://127.0.0.1:99999", "invalid port"),
            ("http://127.0.0.1:0", "invalid port"),
            ("http://[::1]:abc", "invalid port"),
        ] {
            match Client::new(url) {
                Err(Error::InvalidUrl { reason, .. }) => {
                    assert!(reason.contains(says), "{url}: {reason}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        for ok in [
            "http://[::1]:8000",
            "http://[::1]",
            "http://h:",
            "http://h:65535/api",
        ] {
            assert!(Client::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn an_error_body_that_is_not_ours_is_summed_up() {
        let page = format!("<!DOCTYPE HTML>\n<html>{}</html>", "x".repeat(5000));
        let (message, error_type) = error_message(page.as_bytes());
        assert_eq!(error_type, None);
        assert!(message.starts_with("<!DOCTYPE HTML> … ("), "{message}");
        assert!(
            message.contains("not a mockpredict error body"),
            "{message}"
        );
        assert_eq!(error_message(b"plain text").0, "plain text");
    }

    #[test]
    fn trailing_slash_is_trimmed_and_token_is_redacted() {
        let c = Client::new("http://h:1/api/")
            .expect("valid")
            .with_token("secret");
        assert_eq!(c.base_url(), "http://h:1/api");
        let debug = format!("{c:?}");
        assert!(!debug.contains("secret"), "{debug}");
    }
}
