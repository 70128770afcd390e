//! Locking a std mutex without poison handling at every call site.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`. A poisoned lock means a panic while it was held; nothing in this crate
/// panics under its locks (user code, a model or an observer, never runs under one),
/// so the guard is recovered.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
