//! Appending without blocking a thread: [`AuditLog::append_async`], [`AuditLog::submit`] and the
//! [`Ticket`] they wait on.
//!
//! An asynchronous appender encodes and hashes its entry in its own task, as a blocking one
//! does, queues the frame and registers its [`Waker`]; it never leads a commit (that would
//! block an executor thread for an `fdatasync`). The log's writer thread commits for it, and
//! every commit wakes the wakers of the entries it made durable in one pass, with the queue's
//! lock released: no thread per caller, and no condvar herd. A task is woken only when its entry
//! is durable, or when the log failed and it must be refused.
//!
//! Durability is the blocking path's: a ticket resolves to its [`Receipt`] only once the
//! `fdatasync` covering its entry returned, and to [`AuditError::NotDurable`] if a commit failed
//! before covering it (every later one is refused too, until the log is reopened). An entry is
//! queued when it is submitted: dropping its ticket, or the future of `append_async` once it was
//! polled, neither withdraws it nor writes it twice; only the acknowledgement is lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use super::{lock, AuditLog, Inner, Receipt, Waiting};
use crate::entry::Entry;
use crate::subjects::SubjectSet;
use crate::AuditError;

/// An entry queued for the log, not yet known to be durable: a future that resolves to its
/// [`Receipt`] once the `fdatasync` covering it returned, or to [`AuditError::NotDurable`].
///
/// Entries are made durable in sequence order, so a caller with several entries in flight may
/// wait for the last ticket alone: when it resolves, every earlier one has too.
#[must_use = "the entry is not known to be durable until the ticket resolves"]
pub struct Ticket {
    inner: Arc<Inner>,
    receipt: Receipt,
    /// The waker registered with the log, if any (re-registered only if the task's changes).
    waker: Option<Waker>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("seq", &self.receipt.seq)
            .finish_non_exhaustive()
    }
}

/// What a ticket can say before it resolves, and waiting for it without an executor.
impl Ticket {
    /// The entry's sequence number (its position in the log once durable).
    pub fn seq(&self) -> u64 {
        self.receipt.seq
    }

    /// Blocks the calling thread until the entry is durable (or refused).
    pub fn wait(mut self) -> Result<Receipt, AuditError> {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(done) = Pin::new(&mut self).poll(&mut cx) {
                return done;
            }
            // A wake between the poll and here is not lost: park returns at once.
            std::thread::park();
        }
    }
}

impl Future for Ticket {
    type Output = Result<Receipt, AuditError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let seq = self.receipt.seq;
        // The durable count only grows, and only past entries that were synced.
        if self.inner.durable.load(Ordering::Acquire) > seq {
            return Poll::Ready(Ok(self.receipt));
        }
        let inner = Arc::clone(&self.inner);
        let mut p = lock(&inner.pending);
        if p.durable > seq {
            return Poll::Ready(Ok(self.receipt));
        }
        if let Some(refused) = p.refusal() {
            return Poll::Ready(Err(refused));
        }
        // Registered under the lock the committer takes to update the durable count, so a
        // commit cannot slip between the check above and the registration.
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            p.wakers.push((seq, cx.waker().clone()));
            drop(p);
            self.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Wakes a thread blocked in [`Ticket::wait`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// The future of [`AuditLog::append_async`]: it queues its entry when first polled, with the
/// task's waker registered in the same step, then waits as a [`Ticket`].
#[must_use = "futures do nothing unless polled: the entry is queued when first polled"]
pub struct Append<'a> {
    log: &'a AuditLog,
    /// The entry, until it is queued on the first poll.
    entry: Option<Entry>,
    /// Its ticket, once queued.
    ticket: Option<Ticket>,
}

impl std::fmt::Debug for Append<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append")
            .field("seq", &self.ticket.as_ref().map(Ticket::seq))
            .finish_non_exhaustive()
    }
}

impl Future for Append<'_> {
    type Output = Result<Receipt, AuditError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(entry) = this.entry.take() {
            let receipt = this.log.stage(entry, Waiting::Task(Some(cx.waker())))?;
            this.ticket = Some(Ticket {
                inner: Arc::clone(&this.log.inner),
                receipt,
                waker: Some(cx.waker().clone()),
            });
            // Queued with the waker registered: woken when it is durable, or refused.
            return Poll::Pending;
        }
        match &mut this.ticket {
            Some(ticket) => Pin::new(ticket).poll(cx),
            // Polled again after it failed to queue, which a caller must not do.
            None => Poll::Ready(Err(AuditError::Closed)),
        }
    }
}

/// The asynchronous face: appending without blocking a thread.
impl AuditLog {
    /// Appends `entry` and resolves once it is durable, like [`AuditLog::append`] but without
    /// blocking a thread: the log's writer thread commits, and wakes this task when the
    /// `fdatasync` covering the entry returned. The entry is queued when the future is first
    /// polled; once queued, dropping the future does not withdraw it.
    pub fn append_async(&self, entry: Entry) -> Append<'_> {
        Append {
            log: self,
            entry: Some(entry),
            ticket: None,
        }
    }

    /// Queues `entry` now and returns a [`Ticket`] to wait on, in async code (`.await`) or
    /// a thread ([`Ticket::wait`]). For a caller with several entries in flight: submit each,
    /// then await the tickets (the last one alone is enough).
    ///
    /// ```
    /// use domicile_audit::{AuditLog, KeyKind, LogConfig, SigningKey};
    /// # let entry = domicile_audit::doc_example_entry()?;
    /// # let dir = tempfile::tempdir()?;
    /// let key = SigningKey::generate("audit.example/us", KeyKind::Ed25519)?;
    /// let log = AuditLog::open(dir.path(), LogConfig::new(key))?;
    /// let first = log.submit(entry.clone())?; // queued: encoded, hashed, framed
    /// let second = log.submit(entry)?;
    /// assert_eq!((first.seq(), second.seq()), (0, 1));
    /// let receipt = second.wait()?; // or `.await` in async code
    /// assert!(log.size() >= 2, "entries become durable in order: the first one is too");
    /// assert_eq!(first.wait()?.seq, 0);
    /// # let _ = receipt;
    /// Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit(&self, entry: Entry) -> Result<Ticket, AuditError> {
        let receipt = self.stage(entry, Waiting::Task(None))?;
        Ok(self.ticket(receipt))
    }

    /// [`AuditLog::submit`] for a bulk entry: its subject list is kept beside the log first
    /// (a durable file write, in the calling thread), as [`AuditLog::append_batch`] does.
    pub fn submit_batch(&self, entry: Entry, subjects: &SubjectSet) -> Result<Ticket, AuditError> {
        self.keep_subject_set(&entry, subjects)?;
        self.submit(entry)
    }

    fn ticket(&self, receipt: Receipt) -> Ticket {
        Ticket {
            inner: Arc::clone(&self.inner),
            receipt,
            waker: None,
        }
    }
}
