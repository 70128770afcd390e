//! [`JobQueueBuilder`]: a queue with another store, or with observers; `build` starts
//! its background tasks.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{JobQueue, Observer, QueueConfig, Shared, StopOnDrop, Totals, worker};
use crate::store::{MemoryStore, Store};
use crate::{Model, Result};

/// Builds a [`JobQueue`] with a store other than the default, or with observers.
pub struct JobQueueBuilder<M: Model, S = MemoryStore<<M as Model>::Input, <M as Model>::Output>> {
    model: M,
    config: QueueConfig,
    /// Makes the store from the final configuration: the default [`MemoryStore`]
    /// takes its retention from it.
    make_store: Box<dyn FnOnce(&QueueConfig) -> S + Send>,
    observers: Vec<Arc<dyn Observer>>,
}

impl<M: Model> JobQueueBuilder<M, MemoryStore<M::Input, M::Output>> {
    pub(super) fn new(model: M) -> Self {
        Self {
            model,
            config: QueueConfig::default(),
            make_store: Box::new(|c| MemoryStore::new(c.result_ttl, c.max_retained)),
            observers: Vec::new(),
        }
    }
}

impl<M: Model, S: Store<Input = M::Input, Output = M::Output>> JobQueueBuilder<M, S> {
    /// Sets the configuration (default: [`QueueConfig::default`]).
    #[must_use]
    pub fn config(mut self, config: QueueConfig) -> Self {
        self.config = config;
        self
    }

    /// Uses this store instead of a [`MemoryStore`] made from the configuration's
    /// `result_ttl` and `max_retained` (a custom store keeps its own retention).
    #[must_use]
    pub fn store<S2: Store<Input = M::Input, Output = M::Output>>(
        self,
        store: S2,
    ) -> JobQueueBuilder<M, S2> {
        JobQueueBuilder {
            model: self.model,
            config: self.config,
            make_store: Box::new(move |_| store),
            observers: self.observers,
        }
    }

    /// Adds an observer, told of every start and terminal transition.
    #[must_use]
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Builds the queue and starts its background tasks on the current runtime.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when the configuration does not validate.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(self) -> Result<JobQueue<M, S>> {
        self.config.validate()?;
        let store = (self.make_store)(&self.config);
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(self.config.concurrency)),
            running: std::sync::atomic::AtomicUsize::new(0),
            model: self.model,
            store,
            config: self.config,
            observers: self.observers,
            closing: AtomicBool::new(false),
            idle: Notify::new(),
            abort: CancellationToken::new(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            totals: Totals::default(),
        });
        shared.tasks.spawn(worker::dispatch(Arc::clone(&shared)));
        shared.tasks.spawn(worker::purge(Arc::clone(&shared)));
        if let Some(deadline) = shared.config.deadline {
            shared
                .tasks
                .spawn(worker::sweep(Arc::clone(&shared), deadline));
        }
        let guard = Arc::new(StopOnDrop {
            abort: shared.abort.clone(),
            stop: shared.stop.clone(),
        });
        Ok(JobQueue {
            shared,
            _guard: guard,
        })
    }
}
