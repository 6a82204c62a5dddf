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

/// Records opened on the caller's thread before a scan starts the read-ahead thread.
pub(crate) const INLINE: usize = 128;
/// Records per chunk handed to the read-ahead thread.
pub(crate) const CHUNK: usize = 128;
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
    worker: Option<Worker>,
    /// Whether the scan has tried to start the worker (it does once).
    tried_worker: bool,
    /// Where each chunk handed to the thread and not yet returned will come back, in order.
    /// One channel per chunk: if the thread dies, the chunk's sender is dropped with it and
    /// the scan learns so instead of waiting.
    pending: VecDeque<Pending>,
    /// Chunks read so far.
    chunks: usize,
    /// Whether `sealed` has returned its last item.
    drained: bool,
}

/// A chunk to open and where to send it opened.
type Job = (Vec<Sealed>, Sender<Vec<Opened>>);

/// A store's read-ahead thread, started by its first long scan.
#[derive(Default)]
pub(crate) struct ScanThread {
    running: Mutex<Option<Running>>,
}

struct Running {
    jobs: Sender<Job>,
    thread: JoinHandle<()>,
}

impl ScanThread {
    /// Where to send chunks, starting the thread if it is not running; `None` if no thread can
    /// be started (the scan then opens everything itself).
    fn jobs(&self, opener: &Arc<Opener>) -> Option<Sender<Job>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.as_ref().filter(|r| !r.thread.is_finished()) {
            return Some(r.jobs.clone());
        }
        let (jobs, inbox) = mpsc::channel::<Job>();
        let opener = opener.clone();
        let thread = std::thread::Builder::new()
            .name("domicile-scan".into())
            .spawn(move || {
                while let Some((chunk, reply)) = spin_recv(&inbox) {
                    let opened = chunk.into_iter().map(|item| open(&opener, item)).collect();
                    // A scan dropped meanwhile no longer listens; the next job may be another's.
                    let _ = reply.send(opened);
                }
            })
            .ok()?;
        *running = Some(Running {
            jobs: jobs.clone(),
            thread,
        });
        Some(jobs)
    }
}

impl Drop for ScanThread {
    fn drop(&mut self) {
        // Every scan borrows the store, so none is left: closing the channel ends the thread,
        // and waiting for it means nothing it holds (the key custodian) outlives the store.
        let running = self.running.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(Running { jobs, thread }) = running.take() {
            drop(jobs);
            let _ = thread.join();
        }
    }
}

/// A scan's link to the thread.
struct Worker {
    jobs: Sender<Job>,
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
            worker: None,
            tried_worker: !threaded,
            pending: VecDeque::new(),
            chunks: 0,
            drained: false,
        }
    }

    fn start_worker(&mut self) {
        self.tried_worker = true;
        self.worker = self.thread.jobs(self.opener).map(|jobs| Worker { jobs });
    }

    /// Hands chunks to the worker until [`IN_FLIGHT`] are out or the backend has no more.
    fn fill(&mut self) {
        let Some(worker) = &self.worker else { return };
        while !self.drained && self.there() < IN_FLIGHT {
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
            if worker.jobs.send((chunk, reply)).is_err() {
                // The thread is gone (it panicked): what it was given is lost, so say so.
                self.fail();
                return;
            }
            self.pending.push_back(Pending::There(opened));
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
        self.pending.clear();
        self.worker = None;
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
            if self.worker.is_none() {
                if self.drained {
                    return None;
                }
                if self.opened_inline >= INLINE && !self.tried_worker {
                    self.start_worker();
                }
                if self.worker.is_none() {
                    // A short scan so far, or no thread to be had: opened here.
                    self.opened_inline += 1;
                    let Some(item) = self.sealed.next() else {
                        self.drained = true;
                        return None;
                    };
                    return Some(open(self.opener, item));
                }
            }
            self.fill();
            let Some(next_chunk) = self.pending.pop_front() else {
                // Nothing handed over and nothing left to hand over; `ready` may hold the
                // error `fill` pushed.
                if self.ready.is_empty() {
                    return None;
                }
                continue;
            };
            match next_chunk {
                Pending::Here(chunk) => self
                    .ready
                    .extend(chunk.into_iter().map(|item| open(self.opener, item))),
                Pending::There(opened) => match spin_recv(&opened) {
                    Some(opened) => self.ready.extend(opened),
                    None => self.fail(),
                },
            }
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
