//! Locks that go on after a panic.
//!
//! A task that panics while it holds a lock is a bug that its own task reports. The data
//! under the lock is used afterwards as that task left it, rather than every later holder
//! panicking in turn and one bug taking every request down with it.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `lock`, with a poisoned mutex taken as it is.
pub trait LockUnpoisoned<T: ?Sized> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockUnpoisoned<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `read` and `write`, with a poisoned lock taken as it is.
pub trait ReadWriteUnpoisoned<T: ?Sized> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> ReadWriteUnpoisoned<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_mutex_poisoned_by_a_panic_is_still_locked_with_what_the_panic_left() {
        let shared = Arc::new(Mutex::new(vec![1]));
        let holder = Arc::clone(&shared);
        let panicked = std::thread::spawn(move || {
            let mut held = holder.lock().unwrap();
            held.push(2);
            panic!("a bug while the lock is held");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.is_poisoned());
        assert_eq!(*shared.lock_unpoisoned(), vec![1, 2]);
    }

    #[test]
    fn a_read_write_lock_poisoned_by_a_panic_is_still_read_and_written() {
        let shared = Arc::new(RwLock::new(1));
        let holder = Arc::clone(&shared);
        let panicked = std::thread::spawn(move || {
            let mut held = holder.write().unwrap();
            *held = 2;
            panic!("a bug while the lock is held");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.is_poisoned());
        assert_eq!(*shared.read_unpoisoned(), 2);
        *shared.write_unpoisoned() = 3;
        assert_eq!(*shared.read_unpoisoned(), 3);
    }
}
