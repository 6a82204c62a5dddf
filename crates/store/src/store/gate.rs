//! The store's gate: what keeps writes, checks and the operations that change records, lists
//! and keys together (shreds, purges, rebuilds, merges of a subject's lists) out of each
//! other's way.
//!
//! Writes hold the gate shared and exclusive operations hold it exclusively, so no put can
//! slip a record in between a shred's key destruction and its record deletion. A check must
//! see all of an exclusive operation or none of it, but lets writes go on; it does not hold the
//! shared gate while it runs, because an exclusive operation queued behind it would hold back
//! every write until the check ended (a reader-writer lock lets no new reader past a waiting
//! writer): on a large store, for as long as the check takes. Checks and exclusive operations
//! keep each other out through a count of their own instead, and an exclusive operation waits
//! there, not at the lock, until no check runs.

use std::sync::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{lock, read_lock, write_lock};

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct StoreGate {
    rw: RwLock<()>,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Checks running.
    checks: usize,
    /// Whether an exclusive operation holds the gate (or is taking the lock).
    exclusive: bool,
    /// Exclusive operations waiting for the checks to end; new checks wait behind them.
    waiting: usize,
}

/// An exclusive operation's hold on the gate.
pub(super) struct Exclusive<'a> {
    gate: &'a StoreGate,
    write: Option<RwLockWriteGuard<'a, ()>>,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        self.write.take();
        lock(&self.gate.state).exclusive = false;
        self.gate.changed.notify_all();
    }
}

/// A check's hold on the gate.
pub(super) struct Check<'a> {
    gate: &'a StoreGate,
}

impl Drop for Check<'_> {
    fn drop(&mut self) {
        lock(&self.gate.state).checks -= 1;
        self.gate.changed.notify_all();
    }
}

impl StoreGate {
    /// For a write: shared with other writes and checks, never with an exclusive operation.
    pub(super) fn shared(&self) -> RwLockReadGuard<'_, ()> {
        read_lock(&self.rw)
    }

    /// For a shred, a purge or a rebuild: waits until no check runs and no other exclusive
    /// operation holds the gate, then for the writes in flight.
    pub(super) fn exclusive(&self) -> Exclusive<'_> {
        let mut state = lock(&self.state);
        state.waiting += 1;
        while state.checks > 0 || state.exclusive {
            state = self.wait(state);
        }
        state.waiting -= 1;
        state.exclusive = true;
        drop(state);
        Exclusive {
            gate: self,
            write: Some(write_lock(&self.rw)),
        }
    }

    /// [`exclusive`](Self::exclusive) if nothing at all holds the gate now, or `None` at once:
    /// for work that may as well be done another time (a merge of a subject's lists).
    pub(super) fn try_exclusive(&self) -> Option<Exclusive<'_>> {
        let mut state = lock(&self.state);
        if state.checks > 0 || state.exclusive || state.waiting > 0 {
            return None;
        }
        state.exclusive = true;
        drop(state);
        // Dropped on either path: clears `exclusive` again if the lock is not free.
        let mut held = Exclusive {
            gate: self,
            write: None,
        };
        held.write = Some(self.rw.try_write().ok()?);
        Some(held)
    }

    /// For a check: waits while an exclusive operation holds or waits for the gate; writes go
    /// on meanwhile.
    pub(super) fn check(&self) -> Check<'_> {
        let mut state = lock(&self.state);
        while state.exclusive || state.waiting > 0 {
            state = self.wait(state);
        }
        state.checks += 1;
        Check { gate: self }
    }

    fn wait<'s>(
        &self,
        state: std::sync::MutexGuard<'s, State>,
    ) -> std::sync::MutexGuard<'s, State> {
        self.changed
            .wait(state)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
