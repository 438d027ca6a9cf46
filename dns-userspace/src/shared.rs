//! State that several tasks share behind one mutex, and the one place where
//! a lock poisoned by a panic becomes an error.

use std::sync::{Mutex, MutexGuard};

/// A panic left shared state half-changed; nothing more can be done with it.
#[derive(Debug, thiserror::Error)]
#[error("{0} is unusable: a thread panicked while changing it")]
pub struct Poisoned(&'static str);

/// A value behind a mutex, named for the error a poisoned lock gives.
#[derive(Debug)]
pub struct Shared<T> {
    what: &'static str,
    value: Mutex<T>,
}

impl<T> Shared<T> {
    /// `what` names the value in errors ("the kernel maps").
    pub fn new(what: &'static str, value: T) -> Shared<T> {
        Shared {
            what,
            value: Mutex::new(value),
        }
    }

    pub fn lock(&self) -> Result<MutexGuard<'_, T>, Poisoned> {
        self.value.lock().map_err(|_| Poisoned(self.what))
    }
}
