//! Locking shared state that a panic elsewhere cannot make unusable.

use std::sync::{Mutex, MutexGuard};

/// The guard even when another thread panicked while holding the lock: every value kept behind
/// these locks (caches, counters, the in-memory adapters' stores) stays valid between writes.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
