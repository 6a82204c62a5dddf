//! A scan's read-ahead: the caller's thread reads sealed records from the backend while a
//! second thread opens (authenticates and decrypts) the ones read before.
//!
//! Opening is about half of a sealed scan's time and reading the backend the other half, so two
//! cores in a pipeline take a long scan towards the time of the bare backend's. A short scan
//! never involves the thread: the first [`INLINE`] records are opened on the caller's thread, as
//! a get opens one. The thread is the store's, started by its first long scan and shared by
//! every scan after (each with its own reply channel); it stops when the store is dropped.
//! Records come out in the backend's order, errors where they occurred.
//!
//! Only on an embedded backend (sled, redb: [`Backend::exclusive`](crate::Backend::exclusive)).
//! On a database server the caller mostly waits for the server's next page, and the second core
//! is the server's: on PostgreSQL on this 2-core machine the thread made scans slower (0.70× of
//! the bare table against 0.83× without, same day), so there every record is opened by the
//! caller.
//!
//! At most two chunks of a scan are in flight, so a scan holds about [`CHUNK`] × 3 records in
//! memory whatever the collection's size.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::custodian::BlindIndex;
use crate::record::RawRecord;
use crate::store::Opener;
use crate::{Collection, StoreError};

/// Records opened on the caller's thread before a scan starts the read-ahead thread: enough
/// that a scan of a few records never wakes it, few enough that it is not idle for long (128
/// made a scan of 1,000 records slower: `sealed_vs_bare`'s paired phase, 2026-12-04).
const INLINE: usize = 32;
/// Records per chunk handed to the read-ahead thread.
const CHUNK: usize = 128;
/// Every this many chunks, one is opened on the caller's thread: opening a record costs more
/// than reading it from the backend, so the caller, with time to spare, takes a share.
const OWN_EVERY: usize = 8;
/// How long a thread waiting for the other spins before it sleeps: about what opening half a
/// chunk takes. Waking a sleeping thread costs tens of microseconds on a virtual machine,
/// which a pipeline of chunks this size would pay twice per chunk.
const SPIN_FOR: Duration = Duration::from_micros(50);
/// Chunks handed over and not yet returned, at most: one being opened, one waiting.
const IN_FLIGHT: usize = 2;

/// A sealed record as the backend returned it, with where it was found; or the error reading
/// it.
pub(crate) type Sealed = Result<(Collection, BlindIndex, Vec<u8>), StoreError>;
type Opened = Result<RawRecord, StoreError>;

/// Opens `sealed` records in order, ahead of the caller once the scan is long enough.
pub(crate) struct ReadAhead<'a, I> {
    sealed: I,
    opener: &'a Arc<Opener>,
    thread: &'a ScanThread,
    ready: VecDeque<Opened>,
    opened_inline: usize,
    /// Whether chunks go to the store's scan thread.
    threaded: bool,
    /// Whether the scan has tried to start the thread (it does once).
    tried_thread: bool,
    /// The chunks read and not yet returned, in order. One reply channel per chunk handed to
    /// the thread: if the thread dies, the chunk's sender is dropped with it and the scan
    /// learns so instead of waiting.
    pending: VecDeque<Pending>,
    /// Chunks read so far.
    chunks: usize,
    /// Whether `sealed` has returned its last item.
    drained: bool,
}

/// A chunk to open and where to send it opened.
type Job = (Vec<Sealed>, Sender<Vec<Opened>>);

/// A store's read-ahead thread, started by its first long scan.
///
/// Only this holds the sender of the thread's work (a scan sends through it, under its lock),
/// so dropping it always ends the thread, whatever became of the scans.
#[derive(Default)]
pub(crate) struct ScanThread {
    running: Mutex<Option<Running>>,
}

struct Running {
    jobs: Sender<Job>,
    thread: JoinHandle<()>,
}

impl ScanThread {
    fn running(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the thread if it is not running; whether it runs.
    fn start(&self, opener: &Arc<Opener>) -> bool {
        let mut running = self.running();
        if running.as_ref().is_some_and(|r| !r.thread.is_finished()) {
            return true;
        }
        let (jobs, inbox) = mpsc::channel::<Job>();
        let opener = opener.clone();
        let spawned = std::thread::Builder::new()
            .name("domicile-scan".into())
            .spawn(move || {
                while let Some((chunk, reply)) = spin_recv(&inbox) {
                    let opened = chunk.into_iter().map(|item| open(&opener, item)).collect();
                    // A scan dropped meanwhile no longer listens; the next job may be another's.
                    let _ = reply.send(opened);
                }
            });
        // A thread that cannot be started leaves scans on their callers' threads, as slow as
        // short scans, and as correct.
        match spawned {
            Ok(thread) => {
                *running = Some(Running { jobs, thread });
                true
            }
            Err(_) => false,
        }
    }

    /// Hands `chunk` to the thread; gives it back if the thread is not running.
    fn send(&self, chunk: Vec<Sealed>, reply: Sender<Vec<Opened>>) -> Result<(), Vec<Sealed>> {
        match self.running().as_ref() {
            Some(r) => r.jobs.send((chunk, reply)).map_err(|back| back.0 .0),
            None => Err(chunk),
        }
    }
}

impl Drop for ScanThread {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the chunk it is opening; waiting for it
        // means nothing it holds (the key custodian) outlives the store.
        let running = self.running.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(Running { jobs, thread }) = running.take() {
            drop(jobs);
            let _ = thread.join();
        }
    }
}

impl<'a, I: Iterator<Item = Sealed>> ReadAhead<'a, I> {
    /// A scan of `sealed`; `threaded` says whether it may use the store's scan thread once it
    /// is long (the store allows it on an embedded backend only).
    pub(crate) fn new(
        sealed: I,
        opener: &'a Arc<Opener>,
        thread: &'a ScanThread,
        threaded: bool,
    ) -> Self {
        ReadAhead {
            sealed,
            opener,
            thread,
            ready: VecDeque::new(),
            opened_inline: 0,
            threaded: false,
            tried_thread: !threaded,
            pending: VecDeque::new(),
            chunks: 0,
            drained: false,
        }
    }

    /// Reads chunks and hands them to the thread until [`IN_FLIGHT`] are out or the backend
    /// has no more.
    fn fill(&mut self) {
        while self.threaded && !self.drained && self.there() < IN_FLIGHT {
            let chunk: Vec<Sealed> = self.sealed.by_ref().take(CHUNK).collect();
            if chunk.len() < CHUNK {
                self.drained = true;
            }
            if chunk.is_empty() {
                break;
            }
            self.chunks += 1;
            if self.chunks.is_multiple_of(OWN_EVERY) {
                self.pending.push_back(Pending::Here(chunk));
                continue;
            }
            let (reply, opened) = mpsc::channel();
            match self.thread.send(chunk, reply) {
                Ok(()) => self.pending.push_back(Pending::There(opened)),
                Err(chunk) => {
                    // The thread is gone: this chunk, and the rest of the scan, are opened here.
                    self.pending.push_back(Pending::Here(chunk));
                    self.threaded = false;
                }
            }
        }
    }

    fn there(&self) -> usize {
        self.pending
            .iter()
            .filter(|p| matches!(p, Pending::There(_)))
            .count()
    }

    /// Ends the scan with an error: records handed to a thread that died were not opened.
    fn fail(&mut self) {
        self.drained = true;
        self.threaded = false;
        self.pending.clear();
        self.ready.push_back(Err(StoreError::WorkerPanicked {
            what: "opening the records a scan read",
        }));
    }
}

impl<I: Iterator<Item = Sealed>> Iterator for ReadAhead<'_, I> {
    type Item = Opened;

    fn next(&mut self) -> Option<Opened> {
        loop {
            if let Some(opened) = self.ready.pop_front() {
                return Some(opened);
            }
            // Keep the thread busy before waiting for it.
            self.fill();
            if let Some(chunk) = self.pending.pop_front() {
                match chunk {
                    Pending::Here(chunk) => self
                        .ready
                        .extend(chunk.into_iter().map(|item| open(self.opener, item))),
                    Pending::There(opened) => match spin_recv(&opened) {
                        Some(opened) => self.ready.extend(opened),
                        None => self.fail(),
                    },
                }
                continue;
            }
            if self.drained {
                return None;
            }
            if !self.tried_thread && self.opened_inline >= INLINE {
                self.tried_thread = true;
                self.threaded = self.thread.start(self.opener);
                if self.threaded {
                    continue;
                }
            }
            // A short scan so far, or no thread to be had: opened here.
            self.opened_inline += 1;
            let Some(item) = self.sealed.next() else {
                self.drained = true;
                return None;
            };
            return Some(open(self.opener, item));
        }
    }
}

fn open(opener: &Opener, item: Sealed) -> Opened {
    let (collection, blind, sealed) = item?;
    opener.open_owned(collection, &blind, sealed, None)
}

/// Receives from `from`, spinning for up to [`SPIN_FOR`] before sleeping; `None` once every
/// sender is gone.
fn spin_recv<T>(from: &Receiver<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        match from.try_recv() {
            Ok(item) => return Some(item),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if started.elapsed() < SPIN_FOR => {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            }
            Err(mpsc::TryRecvError::Empty) => return from.recv().ok(),
        }
    }
}

/// A chunk read from the backend, in scan order.
enum Pending {
    /// Handed to the thread; opened, it comes back here.
    There(Receiver<Vec<Opened>>),
    /// Kept, to be opened on the caller's thread when its turn comes.
    Here(Vec<Sealed>),
}
