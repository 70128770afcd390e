//! [`serve`]: the accept loop. HTTP/1.1 (keep-alive) and HTTP/2 cleartext on one port,
//! limits that close connections with no request in flight (one that has not made its
//! first request within the header-read timeout, slowloris; one idle past the
//! keep-alive timeout after a request), on either protocol, a cap on concurrent
//! connections, and graceful shutdown: drain, close the listener, let in-flight
//! requests finish, then stop the queue.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use mockpredict_core::store::Store;
use mockpredict_core::{Model, ShutdownReport};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::FOREVER;
use crate::{App, Body, Result};

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down gracefully
/// and returns what the queue's shutdown did.
///
/// On shutdown: if [`drain_delay`](crate::ServerConfig::drain_delay) is set, the
/// server first keeps serving that long with `/readyz` answering 503
/// ([`App::unready`]); then the app starts [draining](App::drain) (`/readyz` 503, new
/// predictions 503), the listener closes, open connections finish their in-flight
/// requests (sync predictions included) and close, and the queue gets whatever is left of
/// [`shutdown_timeout`](crate::ServerConfig::shutdown_timeout) to finish admitted
/// predictions before it cancels the rest. Clients still waiting then get those
/// `canceled` answers (connections have up to a second more to write them) before
/// this returns.
///
/// # Errors
///
/// None today: accept errors are logged and retried (a full file-descriptor table
/// must not stop the server). The `Result` leaves room for fatal ones.
pub async fn serve<M, B>(
    listener: TcpListener,
    app: App<M, B>,
    shutdown: impl Future<Output = ()>,
) -> Result<ShutdownReport>
where
    M: Model,
    M::Input: Serialize + DeserializeOwned,
    M::Output: Serialize,
    B: Store<Input = M::Input, Output = M::Output>,
{
    let config = app.config().clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No hyper header-read timer: it is armed and cancelled on every request (~650
    // instructions, BENCHMARKS.md), and the connection's watcher below already closes
    // a connection whose first request has not begun within `header_read_timeout`
    // (stalled mid-headers: its request only counts once its head is read), and one
    // idle for `keep_alive_timeout` after a request, on HTTP/1.1 and HTTP/2 alike.
    // A keep-alive timeout of zero means no keep-alive: hyper then answers with
    // `connection: close` and closes after the response, so no client reuses it.
    builder
        .http1()
        .header_read_timeout(None)
        .keep_alive(!config.keep_alive_timeout.is_zero());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)));
    // Told to connections when the drain starts; the tracker counts them and says
    // when the last one has closed.
    let draining = CancellationToken::new();
    let connections = TaskTracker::new();
    // At least one, as the setter ensures: with zero (set through the public field)
    // the server would never accept a connection.
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    // The accept loop ends when the signal has fired and the drain delay (if any)
    // has passed, serving as before meanwhile but for `/readyz`.
    let shutdown = async {
        shutdown.await;
        let delay = config.drain_delay.min(FOREVER);
        if !delay.is_zero() {
            app.unready();
            tracing::info!(
                delay = %humantime::format_duration(delay),
                "shutting down: /readyz answers 503; still serving until the drain delay ends"
            );
            tokio::time::sleep(delay).await;
        }
    };
    tokio::pin!(shutdown);
    let mut accept_errors = AcceptBackoff::default();
    loop {
        // Take a connection slot before accepting, so a full server leaves new
        // connections in the kernel's backlog instead of accepting and starving them.
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed; treat as shutdown
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    accept_errors.recovered();
                    accepted
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning, and keep
                    // the slot's connection in the kernel's backlog meanwhile.
                    let pause = accept_errors.failed(&e);
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let builder = builder.clone();
        let draining = draining.clone();
        let app = app.clone();
        let header_timeout = config.header_read_timeout;
        let keep_alive = config.keep_alive_timeout;
        let open = app.metrics().connection_opened();
        connections.spawn(async move {
            let _slot = slot;
            let _open = open;
            // Idle from the accept on: the first byte's wait counts toward the limit.
            let activity = Arc::new(Activity::new());
            // A client that connects and sends nothing must not hold a slot either,
            // nor hold up the drain (a load balancer's pre-opened connection, say).
            let mut first = [0u8; 1];
            let first_byte = tokio::select! {
                peeked = tokio::time::timeout(header_timeout, stream.peek(&mut first)) => {
                    matches!(peeked, Ok(Ok(n)) if n > 0)
                }
                () = draining.cancelled() => false,
            };
            if !first_byte {
                tracing::debug!(%peer, "closing a connection that sent nothing");
                return;
            }
            let service = {
                let activity = Arc::clone(&activity);
                service_fn(move |req| {
                    let app = app.clone();
                    let in_flight = InFlight::start(&activity);
                    async move {
                        let resp = app.handle(req).await;
                        Ok::<_, Infallible>(resp.map(|body| Tracked {
                            body,
                            _in_flight: in_flight,
                        }))
                    }
                })
            };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            // The drain, and the idle limits: hyper closes an idle HTTP/1.1 keep-alive
            // connection only with its header-read timer (off, see above), and an
            // HTTP/2 one lives as long as its client answers pings: without this, idle
            // or stalled clients could hold every slot.
            let drain = draining.cancelled();
            let idle = activity.idle_for(header_timeout, keep_alive);
            match drive(conn.as_mut(), drain, idle).await {
                Ended::Closed(Ok(())) => {}
                Ended::Closed(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                Ended::Idle { draining } => {
                    tracing::debug!(%peer, "closing an idle connection");
                    // As the drain closes one: HTTP/2 sends GOAWAY first (RFC 9113
                    // §9.1), so the client knows which of its requests were not
                    // processed, and a request it sent before seeing the GOAWAY is
                    // still served. Driven until hyper closes it, or until it has had
                    // no request in flight for a moment (one stalled mid-headers).
                    if !draining {
                        conn.as_mut().graceful_shutdown();
                    }
                    activity.restart_idle();
                    tokio::select! {
                        _ = conn => {}
                        () = activity.idle_for(IDLE_CLOSE_GRACE, IDLE_CLOSE_GRACE) => {}
                    }
                }
            }
        });
    }
    let started = Instant::now();
    app.drain();
    drop(listener);
    draining.cancel();
    connections.close();
    tracing::info!(
        connections = connections.len(),
        timeout = %humantime::format_duration(config.shutdown_timeout),
        "shutting down: listener closed, waiting for in-flight requests"
    );
    let deadline = started + config.shutdown_timeout.min(FOREVER);
    tokio::select! {
        () = connections.wait() => tracing::info!("all connections closed"),
        () = tokio::time::sleep_until(deadline) => {
            tracing::warn!("shutdown timeout reached with connections still open");
        }
    }
    let report = app
        .queue()
        .shutdown(deadline.saturating_duration_since(Instant::now()))
        .await;
    // What the queue canceled is still owed an answer: sync clients get their
    // `canceled` prediction, event streams their last event, and then their
    // connections close (they are draining). A process exits when this returns, so
    // give them a moment to write it; a client that does not read is not waited for.
    if !connections.is_empty() {
        match tokio::time::timeout(ANSWER_GRACE, connections.wait()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(
                connections = connections.len(),
                "closing connections that did not take their last answers"
            ),
        }
    }
    Ok(report)
}

/// After the shutdown timeout, how long connections may take to write the answers
/// of the predictions the queue canceled then.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// Failed accepts in a row (out of file descriptors, say): the pause before the
/// next try doubles from 5 ms to 1 s, as Go's `net/http` does, and the log says so
/// when it starts and when accepting works again, not on every retry.
#[derive(Default)]
struct AcceptBackoff {
    failures: u64,
    pause: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MOST: Duration = Duration::from_secs(1);

    /// Counts a failed accept and returns how long to wait before the next.
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(
                %error,
                "accept failed; retrying with a growing pause (out of file descriptors? \
                 see --max-connections and `ulimit -n`)"
            );
        }
        self.failures += 1;
        self.pause = (self.pause * 2).clamp(Self::FIRST, Self::MOST);
        self.pause
    }

    /// An accept worked: logs the end of a run of failures, if any.
    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(failed = self.failures, "accepting connections again");
            *self = Self::default();
        }
    }
}

/// How long an idle connection being closed gracefully (HTTP/2: GOAWAY, then a PING
/// round trip) may go with no request in flight before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_millis(100);

/// How a connection ended.
enum Ended<E> {
    /// hyper finished it (the client closed, or the drain completed it).
    Closed(Result<(), E>),
    /// Reached the idle limit, and is to be closed; `draining`: its graceful
    /// shutdown has begun already.
    Idle { draining: bool },
}

/// Drives `conn` until it ends, starting its graceful shutdown when `drain`
/// resolves, and closing it when `idle` does (the idle limit holds during the drain
/// too).
///
/// The connection is polled on every wake-up of its task, first, so that bytes of a
/// new request are read (and the request counted in flight) before the idle limit
/// is looked at. The watchers are polled only when one of them woke the task: a
/// `select!` over the three would poll the drain's and the idle timer's futures on
/// every wake-up (~600 instructions per request, BENCHMARKS.md). They are polled
/// with a waker of their own that raises a flag and then wakes the task.
async fn drive<C>(
    mut conn: Pin<&mut C>,
    drain: impl Future<Output = ()>,
    idle: impl Future<Output = ()>,
) -> Ended<C::Error>
where
    C: GracefulConnection,
{
    let mut drain = std::pin::pin!(drain);
    let mut idle = std::pin::pin!(idle);
    let flag = Arc::new(WatchFlag {
        // Raised: the first poll registers the watchers.
        raised: AtomicBool::new(true),
        task: Mutex::new(None),
    });
    let flag_waker = Waker::from(Arc::clone(&flag));
    let mut draining = false;
    // The task waker the flag holds, kept here too so that checking it takes no lock.
    let mut task: Option<Waker> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = conn.as_mut().poll(cx) {
            return Poll::Ready(Ended::Closed(done));
        }
        if flag.lower(&mut task, cx.waker()) {
            let mut watchers = Context::from_waker(&flag_waker);
            if !draining && drain.as_mut().poll(&mut watchers).is_ready() {
                // In-flight requests finish; an idle keep-alive connection closes
                // now; HTTP/2 sends GOAWAY. Polled again for hyper to act on it.
                draining = true;
                conn.as_mut().graceful_shutdown();
                if let Poll::Ready(done) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Ended::Closed(done));
                }
            }
            if idle.as_mut().poll(&mut watchers).is_ready() {
                return Poll::Ready(Ended::Idle { draining });
            }
        }
        Poll::Pending
    })
    .await
}

/// The watchers' waker: raises the flag, then wakes the connection's task.
struct WatchFlag {
    raised: AtomicBool,
    /// The connection task's waker, as of its last poll.
    task: Mutex<Option<Waker>>,
}

impl WatchFlag {
    /// Makes sure the flag holds the task's current waker (`held` is the caller's
    /// copy of the one it holds: a task's waker rarely changes, so this rarely takes
    /// the lock), then lowers the flag and says whether it was raised. In this order,
    /// a watcher that fires after the flag is read wakes the task with a current
    /// waker, and the next poll sees the flag.
    fn lower(&self, held: &mut Option<Waker>, current: &Waker) -> bool {
        if !held.as_ref().is_some_and(|w| w.will_wake(current)) {
            *self
                .task
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(current.clone());
            *held = Some(current.clone());
        }
        // A load first: the flag is rarely raised, and a read is cheaper than a swap.
        self.raised.load(Ordering::Acquire) && self.raised.swap(false, Ordering::AcqRel)
    }
}

impl Wake for WatchFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raised.store(true, Ordering::Release);
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// What a connection is doing: how many of its requests are in flight (until their
/// response bodies end), since when it has had none, and whether it has made a
/// request yet.
struct Activity {
    /// A std `Mutex`: nothing awaits while holding it.
    state: Mutex<ActivityState>,
}

#[derive(Clone, Copy)]
struct ActivityState {
    in_flight: usize,
    /// When the last request ended (or the connection was accepted).
    idle_since: Instant,
    /// Whether a request has begun on this connection.
    served: bool,
}

/// With requests in flight, the shortest pause between the idle watcher's looks (a
/// zero limit must not make it spin while a long request runs).
const LOOK_IN_AT_LEAST: Duration = Duration::from_millis(100);

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: Instant::now(),
                served: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The state stays consistent even if a holder panicked: plain integers.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts idleness from now on, if no request is in flight (a connection being
    /// closed gets a fresh, short idle limit).
    fn restart_idle(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }

    /// Resolves once the connection has had no request in flight for `first` since it
    /// was accepted, if it has made no request yet (a client that never gets a whole
    /// request head across: slowloris), or for `later` since its last request ended.
    ///
    /// A head that stalls after a request counts as idleness: it holds the connection
    /// no longer than an idle client may.
    async fn idle_for(&self, first: Duration, later: Duration) {
        loop {
            let state = *self.lock();
            let limit = if state.served { later } else { first }.min(FOREVER);
            let now = Instant::now();
            let next = if state.in_flight > 0 {
                // The idle time can only start once the requests end.
                now + limit.max(LOOK_IN_AT_LEAST)
            } else if now.duration_since(state.idle_since) >= limit {
                return;
            } else {
                state.idle_since + limit
            };
            tokio::time::sleep_until(next).await;
        }
    }
}

/// One request in flight on a connection, from its headers to the end of its
/// response body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        let mut state = activity.lock();
        state.in_flight += 1;
        state.served = true;
        drop(state);
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.idle_since = Instant::now();
    }
}

/// A response body that keeps its request counted as in flight until it ends (or
/// is dropped), so an event stream or a long answer is never taken for idleness.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM (what `kill`, Docker and
/// Kubernetes send to stop a process): the shutdown future to give [`serve`], so that
/// an embedded server drains in a container as the binary does.
///
/// ```no_run
/// # async fn run(app: mockpredict_server::App<mockpredict_core::MockModel>) -> mockpredict_server::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8001").await?;
/// mockpredict_server::serve(listener, app, mockpredict_server::shutdown_signal()).await?;
/// # Ok(())
/// # }
/// ```
pub async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_back_off_from_5_ms_to_1_s_and_start_over_once_one_works() {
        let mut backoff = AcceptBackoff::default();
        let e = std::io::Error::from_raw_os_error(24); // EMFILE
        let pauses: Vec<u64> = (0..10)
            .map(|_| backoff.failed(&e).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.recovered();
        assert_eq!(backoff.failed(&e), Duration::from_millis(5));
    }
}
