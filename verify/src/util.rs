//! Small helpers.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in epoch seconds.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Lock helpers that survive poisoning: the data behind these locks is
/// always left consistent (single assignments), so a panic elsewhere must
/// not turn every later verification into a panic.
pub(crate) mod lock {
    use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

    pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
        l.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
        l.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn plain<T>(l: &Mutex<T>) -> MutexGuard<'_, T> {
        l.lock().unwrap_or_else(|e| e.into_inner())
    }
}
