//! Server-Sent Events for `GET /predictions/predict/{id}/events`: one event per status
//! change, the last one carrying the result, then the stream ends.
//!
//! A task per stream forwards the queue's [`Subscription`] into a bounded channel that
//! the response body drains. The task also watches for the body being dropped (the
//! client went away), so a disconnected stream stops at once instead of lingering
//! until its prediction finishes.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use mockpredict_core::store::Store;
use mockpredict_core::{Model, Subscription};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::app::Body;
use crate::config::deadline_in;
use crate::metrics::Metrics;
use crate::wire::PredictionBody;

/// Streams `subscription` as `text/event-stream` frames:
/// `id: <n>`, `event: <status>`, `data: <prediction JSON>`; a `: keep-alive` comment
/// every `keep_alive` while nothing changes.
pub(crate) fn stream<M, B>(
    mut subscription: Subscription<M, B>,
    keep_alive: Duration,
    metrics: Metrics,
) -> Body
where
    M: Model,
    M::Input: Serialize,
    M::Output: Serialize,
    B: Store<Input = M::Input, Output = M::Output>,
{
    // `ServerConfig`'s fields are public, so the setter's floor can be bypassed; a
    // zero period would panic the stream's task (`interval` needs a non-zero one).
    let keep_alive = keep_alive.max(Duration::from_millis(10));
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let open = metrics.event_stream_opened();
    tokio::spawn(async move {
        // Counted down when this task ends, however it ends.
        let _open = open;
        let mut ticker = tokio::time::interval_at(deadline_in(keep_alive), keep_alive);
        loop {
            let frame = tokio::select! {
                () = tx.closed() => return,
                _ = ticker.tick() => Bytes::from_static(b": keep-alive\n\n"),
                next = subscription.next() => {
                    let Some(p) = next else { return };
                    let data = match serde_json::to_string(&PredictionBody::from(&p)) {
                        Ok(data) => data,
                        Err(e) => {
                            // Say so before ending, rather than end with nothing said
                            // (an output its `Serialize` refuses, say).
                            tracing::error!(error = %e, "serializing an event failed");
                            let error = serde_json::json!({
                                "error": format!("could not serialize the prediction: {e}"),
                                "error_type": "internal_error",
                            });
                            let frame = format!("event: server_error\ndata: {error}\n\n");
                            let _ = tx.send(Bytes::from(frame)).await;
                            return;
                        }
                    };
                    // The ID is the status: statuses only move forward, so a client's
                    // `Last-Event-ID` says how far it got (see `App::events`).
                    let frame = format!("id: {0}\nevent: {0}\ndata: {data}\n\n", p.status);
                    if tx.send(Bytes::from(frame)).await.is_err() || p.is_finished() {
                        return;
                    }
                    continue;
                }
            };
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    SseBody { rx }.boxed()
}

/// The response body: frames as the task sends them; ends when the task drops its
/// sender.
struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}
