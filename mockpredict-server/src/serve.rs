//! [`serve`]: the accept loop. HTTP/1.1 (keep-alive) and HTTP/2 cleartext on one port,
//! one idle limit that closes connections with no request in flight (idle, or stalled
//! mid-headers: slowloris), on either protocol, a cap on concurrent connections, and
//! graceful shutdown: drain, close the listener, let in-flight requests finish, then
//! stop the queue.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use mockpredict_core::backend::Backend;
use mockpredict_core::{Model, ShutdownReport};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::FOREVER;
use crate::{App, Body, Result};

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down gracefully
/// and returns what the queue's shutdown did.
///
/// On shutdown: the app starts [draining](App::drain) (`/readyz` 503, new predictions
/// 503), the listener closes, open connections finish their in-flight requests (sync
/// predictions included) and close, and the queue gets whatever is left of
/// [`shutdown_timeout`](crate::ServerConfig::shutdown_timeout) to finish admitted
/// predictions before it cancels the rest.
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
    B: Backend<Input = M::Input, Output = M::Output>,
{
    let config = app.config().clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No hyper header-read timer: it is armed and cancelled on every request (~650
    // instructions, BENCHMARKS.md), and the connection's idle limit below already
    // closes a connection that has had no request in flight for
    // `header_read_timeout`, which a client stalling mid-headers has not (its request
    // only counts once its head is read), on HTTP/1.1 and HTTP/2 alike.
    builder.http1().header_read_timeout(None).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)));
    let graceful = GracefulShutdown::new();
    // At least one, as the setter ensures: with zero (set through the public field)
    // the server would never accept a connection.
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    tokio::pin!(shutdown);
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
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let app = app.clone();
        let header_timeout = config.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            // Idle from the accept on: the first byte's wait counts toward the limit.
            let activity = Arc::new(Activity::new());
            // A client that connects and sends nothing must not hold a slot either.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!(%peer, "closing a connection that sent nothing");
                    return;
                }
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
            tokio::select! {
                // The connection first, without select's random start (a thread-local
                // RNG draw on every wake-up): the idle timer rarely fires.
                biased;
                done = watcher.watch(conn.into_owned()) => {
                    if let Err(e) = done {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                // hyper closes an idle HTTP/1.1 keep-alive connection itself (the
                // header-read timeout), but an HTTP/2 one lives as long as its client
                // answers pings: without this, idle clients could hold every slot.
                () = activity.idle_for(header_timeout) => {
                    tracing::debug!(%peer, "closing an idle connection");
                }
            }
        });
    }
    let started = Instant::now();
    app.drain();
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        timeout = %humantime::format_duration(config.shutdown_timeout),
        "shutting down: listener closed, waiting for in-flight requests"
    );
    let deadline = started + config.shutdown_timeout.min(FOREVER);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep_until(deadline) => {
            tracing::warn!("shutdown timeout reached with connections still open");
        }
    }
    let report = app
        .queue()
        .shutdown(deadline.saturating_duration_since(Instant::now()))
        .await;
    Ok(report)
}

/// What a connection is doing: how many of its requests are in flight (until their
/// response bodies end), and since when it has had none.
struct Activity {
    /// A std `Mutex`: nothing awaits while holding it.
    state: Mutex<(usize, Instant)>,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new((0, Instant::now())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Instant)> {
        // The state stays consistent even if a holder panicked: plain integers.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves once the connection has had no request in flight for `limit`.
    async fn idle_for(&self, limit: Duration) {
        let limit = limit.min(FOREVER);
        loop {
            let (in_flight, since) = *self.lock();
            if in_flight == 0 && since.elapsed() >= limit {
                return;
            }
            // With requests in flight, look again a full `limit` later: the idle
            // time can only start once they end.
            let next = if in_flight == 0 {
                since
            } else {
                Instant::now()
            };
            tokio::time::sleep_until(next + limit).await;
        }
    }
}

/// One request in flight on a connection, from its headers to the end of its
/// response body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.lock().0 += 1;
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.0 = state.0.saturating_sub(1);
        state.1 = Instant::now();
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
