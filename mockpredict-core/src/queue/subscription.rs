//! [`Subscription`]: one prediction's status changes, as server-sent events need them.

use super::JobQueue;
use crate::store::{MemoryStore, Store, Watch};
use crate::{Model, Prediction, PredictionId, Status};

/// A stream of one prediction's status changes, from [`JobQueue::subscribe`].
pub struct Subscription<
    M: Model,
    S: Store<Input = M::Input, Output = M::Output> = MemoryStore<
        <M as Model>::Input,
        <M as Model>::Output,
    >,
> {
    queue: JobQueue<M, S>,
    id: PredictionId,
    watch: S::Watch,
    last: Option<Status>,
}

impl<M: Model, S: Store<Input = M::Input, Output = M::Output>> Subscription<M, S> {
    pub(super) fn new(queue: JobQueue<M, S>, id: PredictionId, watch: S::Watch) -> Self {
        Self {
            queue,
            id,
            watch,
            last: None,
        }
    }

    /// The next status change: first the current state, then one snapshot per status
    /// it moves through (a `processing` step that happened between two looks is still
    /// reported), ending with the terminal one; then `None`. Also `None` if the store
    /// fails meanwhile, or loses the prediction (a shared store that expired it).
    pub async fn next(&mut self) -> Option<Prediction<M::Input, M::Output>> {
        if self.last.is_some_and(Status::is_terminal) {
            return None;
        }
        loop {
            let snap = match self
                .queue
                .shared
                .store
                .read_watched(self.id, &self.watch)
                .await
            {
                Ok(Some(snap)) => snap,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "subscription ended: the store failed");
                    return None;
                }
            };
            if Some(snap.status) != self.last {
                let skipped_processing = self.last == Some(Status::Queued)
                    && snap.status.is_terminal()
                    && snap.started_at.is_some();
                if skipped_processing {
                    self.last = Some(Status::Processing);
                    return Some(Prediction {
                        status: Status::Processing,
                        output: None,
                        error: None,
                        completed_at: None,
                        predict_time: None,
                        ..snap
                    });
                }
                self.last = Some(snap.status);
                return Some(snap);
            }
            self.watch.changed().await;
        }
    }
}
