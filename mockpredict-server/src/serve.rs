//! [`serve`]: the accept loop. HTTP/1.1 (keep-alive) and HTTP/2 cleartext on one port,
//! a header-read timeout, a cap on concurrent connections, and graceful shutdown:
//! drain, close the listener, let in-flight requests finish, then stop the queue.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
use crate::{App, Result};

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
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper adds it to `Instant::now()` unchecked: "forever" must stay representable.
        .header_read_timeout(config.header_read_timeout.min(FOREVER))
        .keep_alive(true);
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
            // hyper's header timeout starts once it knows the protocol; a client that
            // connects and sends nothing must not hold a slot either.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!(%peer, "closing a connection that sent nothing");
                    return;
                }
            }
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
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
