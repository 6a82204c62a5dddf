//! Long scans on two cores, in one of two ways.
//!
//! - **A collection's scan is split** ([`SplitScan`]): its key range is cut into parts, and
//!   the store's scan thread reads and opens every other part while the caller's thread reads
//!   and opens the parts between. Blind indexes are uniform, so parts cut by key position hold
//!   about as many records each; reading sled scales over two threads, so both halves of the
//!   work (reading, opening) are shared.
//! - **A region's scan is a read-ahead pipeline** ([`ReadAhead`]): the caller's thread reads
//!   sealed records from the backend while the scan thread opens (authenticates and decrypts)
//!   the ones read before. A region's keys are grouped by collection, not uniform, so they are
//!   not cut into parts.
//!
//! Opening is about half of a sealed scan's time and reading the backend the other half. Before
//! collection scans were split (2026-12-04), the pipeline left all of the reading on the
//! caller's thread, which was the bottleneck. A short scan never involves the thread: the first
//! [`INLINE`] records are opened on the caller's thread, as a get opens one. The thread is the
//! store's, started by its first long scan and shared by every scan after (each with its own
//! reply channel); it stops when the store is dropped. Records come out in the backend's
//! order, errors where they occurred.
//!
//! Only on an embedded backend (sled, redb: [`Backend::exclusive`]). On a database server the
//! caller mostly waits for the server's next page, and the second core is the server's: on
//! PostgreSQL on this 2-core machine the thread made scans slower (0.70× of the bare table
//! against 0.83× without, same day), so there every record is opened by the caller.
//!
//! A pipelined scan has at most two chunks in flight, so it holds about [`CHUNK`] × 3 records
//! in memory whatever the region's size; a split scan holds about two parts ([`PART`] records
//! each).

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::open::Opener;
use crate::backend::{prefix_end, Backend, ScanIter};
use crate::custodian::BlindIndex;
use crate::record::RawRecord;
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

/// What the thread is asked to do, and where to send the records it opened.
enum Job {
    /// Open a chunk the caller read.
    Open(Vec<Sealed>, Sender<Vec<Opened>>),
    /// Read a part of a collection from the backend and open it (see [`SplitScan`]).
    Part(Part, Sender<Vec<Opened>>),
}

/// A part of a collection's scan: every record with a backend key in `from..until`.
struct Part {
    backend: Arc<dyn Backend>,
    collection: Collection,
    /// The collection's key prefix; a record's blind index follows it.
    prefix_len: usize,
    from: Vec<u8>,
    until: Vec<u8>,
}

impl Part {
    fn open(&self, opener: &Opener) -> Vec<Opened> {
        self.backend
            .scan_range(&self.from, &self.until)
            .map(|item| {
                open_entry(
                    opener,
                    &self.collection,
                    self.prefix_len,
                    self.backend.name(),
                    item,
                )
            })
            .collect()
    }
}

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
                while let Some(job) = spin_recv(&inbox) {
                    // A scan dropped meanwhile no longer listens; the next job may be another's.
                    match job {
                        Job::Open(chunk, reply) => {
                            let opened =
                                chunk.into_iter().map(|item| open(&opener, item)).collect();
                            let _ = reply.send(opened);
                        }
                        Job::Part(part, reply) => {
                            let _ = reply.send(part.open(&opener));
                        }
                    }
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
            Some(r) => r
                .jobs
                .send(Job::Open(chunk, reply))
                .map_err(|back| match back.0 {
                    Job::Open(chunk, _) => chunk,
                    Job::Part(..) => unreachable!("an open job comes back as sent"),
                }),
            None => Err(chunk),
        }
    }

    /// Hands `part` to the thread; whether it took it.
    fn send_part(&self, part: Part, reply: Sender<Vec<Opened>>) -> bool {
        match self.running().as_ref() {
            Some(r) => r.jobs.send(Job::Part(part, reply)).is_ok(),
            None => false,
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

/// Opens a backend entry of a collection's scan, whose blind index follows the collection's
/// prefix of `prefix_len` bytes.
fn open_entry(
    opener: &Opener,
    collection: &Collection,
    prefix_len: usize,
    backend: &'static str,
    item: Result<(Vec<u8>, Vec<u8>), StoreError>,
) -> Opened {
    let located = item.and_then(|(k, sealed)| {
        let blind = k
            .get(prefix_len..)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| StoreError::Backend {
                backend,
                operation: "scan a collection",
                detail: format!("a record key of {} bytes is not a blind index", k.len()),
            })?;
        Ok((collection.clone(), BlindIndex(blind), sealed))
    });
    open(opener, located)
}

/// Records per part of a long collection scan split over two threads (about: parts are cut
/// by blind index, which is uniform, from the density of the scan's first records). The
/// threads take parts in turn, so about this many opened records are what the scan holds
/// ahead of its caller.
const PART: f64 = 128.0;
/// Parts of one scan, at most.
const MAX_PARTS: u64 = 1 << 16;

/// A scan of one collection that, once long, reads and opens every other part of it on the
/// store's scan thread while the caller's thread reads and opens the parts between.
///
/// Reading sled is about half of a sealed scan's time and scales over two threads; a pipeline
/// ([`ReadAhead`]) leaves all of the reading on the caller's thread. The first [`INLINE`]
/// records are read and opened here, as a short scan's are; their blind indexes (uniform,
/// keyed) say how densely the collection fills the rest of its key range, which is then cut
/// into an even number of parts of about [`PART`] records. The caller takes parts 0, 2, 4…;
/// the thread takes part 1 at once, and part k + 2 as soon as the caller starts returning the
/// records of part k. Records come out in key order, errors where they occurred.
pub(crate) struct SplitScan<'a> {
    backend: &'a Arc<dyn Backend>,
    opener: &'a Arc<Opener>,
    thread: &'a ScanThread,
    collection: Collection,
    prefix: Vec<u8>,
    /// The scan of the whole collection, until the split.
    head: Option<ScanIter<'a>>,
    /// Records the head returned, the key position of the first, and the key of the last.
    seen: usize,
    first: Option<u64>,
    last_key: Vec<u8>,
    /// Whether the scan may split (an embedded backend), and has not found it cannot.
    may_split: bool,
    /// After the split: part `i` is `bounds[i]..bounds[i + 1]`.
    bounds: Vec<Vec<u8>>,
    next_part: usize,
    current: Current<'a>,
    /// The part the thread is reading, and where its records come back.
    ahead: Option<(usize, Receiver<Vec<Opened>>)>,
    done: bool,
}

/// The part a split scan is returning records from.
enum Current<'a> {
    /// None yet, or the last one ran out.
    Idle,
    /// One of the caller's parts, read and opened as the scan is advanced.
    Here(ScanIter<'a>),
    /// One of the thread's parts, opened already.
    There(std::vec::IntoIter<Opened>),
}

impl<'a> SplitScan<'a> {
    /// A scan of `collection`, whose backend keys start with `prefix`; `may_split` says whether
    /// it may use the store's scan thread once it is long (an embedded backend only).
    pub(crate) fn new(
        backend: &'a Arc<dyn Backend>,
        opener: &'a Arc<Opener>,
        thread: &'a ScanThread,
        collection: Collection,
        prefix: Vec<u8>,
        may_split: bool,
    ) -> Self {
        let head = backend.scan_prefix(&prefix);
        SplitScan {
            backend,
            opener,
            thread,
            collection,
            prefix,
            head: Some(head),
            seen: 0,
            first: None,
            last_key: Vec::new(),
            may_split,
            bounds: Vec::new(),
            next_part: 0,
            current: Current::Idle,
            ahead: None,
            done: false,
        }
    }

    /// The position of a record's key in the collection's key range: the first 8 bytes of
    /// its blind index.
    fn key_position(&self, key: &[u8]) -> Option<u64> {
        let at = self.prefix.len();
        let bytes: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(bytes))
    }

    fn open(&self, item: Result<(Vec<u8>, Vec<u8>), StoreError>) -> Opened {
        open_entry(
            self.opener,
            &self.collection,
            self.prefix.len(),
            self.backend.name(),
            item,
        )
    }

    /// Cuts what is left of the collection after the head's last record into parts and hands
    /// the first of the thread's to it; whether it did (if not, the head scan goes on alone).
    fn split(&mut self) -> bool {
        let (Some(first), Some(last)) = (self.first, self.key_position(&self.last_key)) else {
            return false;
        };
        let Some(end) = prefix_end(&self.prefix) else {
            return false;
        };
        let left = u64::MAX - last;
        let seen_span = last.saturating_sub(first).max(1);
        let estimate = (self.seen - 1) as f64 * left as f64 / seen_span as f64;
        let mut parts = ((estimate / PART).ceil() as u64).clamp(2, MAX_PARTS);
        parts += parts % 2;
        let step = left / parts;
        if step == 0 || !self.thread.start(self.opener) {
            return false;
        }
        // Just past the last key returned, then evenly spaced positions, then the end.
        let mut from = self.last_key.clone();
        from.push(0);
        self.bounds.push(from);
        for i in 1..parts {
            let mut bound = self.prefix.clone();
            bound.extend_from_slice(&(last + step * i).to_be_bytes());
            self.bounds.push(bound);
        }
        self.bounds.push(end);
        self.dispatch(1);
        true
    }

    /// Hands part `k` to the thread, if there is one; if the thread does not take it, the
    /// caller reads it when its turn comes.
    fn dispatch(&mut self, k: usize) {
        if k + 1 >= self.bounds.len() {
            return;
        }
        let part = Part {
            backend: self.backend.clone(),
            collection: self.collection.clone(),
            prefix_len: self.prefix.len(),
            from: self.bounds[k].clone(),
            until: self.bounds[k + 1].clone(),
        };
        let (reply, opened) = mpsc::channel();
        if self.thread.send_part(part, reply) {
            self.ahead = Some((k, opened));
        }
    }

    /// The next part's records: read here, or received from the thread. `None` once there are
    /// no more parts; an error if the thread died with one.
    fn next_part(&mut self) -> Option<Result<Current<'a>, StoreError>> {
        let k = self.next_part;
        if k + 1 >= self.bounds.len() {
            return None;
        }
        self.next_part += 1;
        match self.ahead.take() {
            Some((j, opened)) if j == k => {
                return Some(match spin_recv(&opened) {
                    Some(opened) => {
                        self.dispatch(k + 2);
                        Ok(Current::There(opened.into_iter()))
                    }
                    None => Err(StoreError::WorkerPanicked {
                        what: "reading and opening part of a scan",
                    }),
                });
            }
            // Not this part's: still the thread's, for later.
            other => self.ahead = other,
        }
        let backend: &'a dyn Backend = &**self.backend;
        Some(Ok(Current::Here(
            backend.scan_range(&self.bounds[k], &self.bounds[k + 1]),
        )))
    }
}

impl Iterator for SplitScan<'_> {
    type Item = Opened;

    fn next(&mut self) -> Option<Opened> {
        loop {
            match &mut self.current {
                Current::Here(items) => match items.next() {
                    Some(item) => return Some(self.open(item)),
                    None => self.current = Current::Idle,
                },
                Current::There(opened) => match opened.next() {
                    Some(opened) => return Some(opened),
                    None => self.current = Current::Idle,
                },
                Current::Idle => {}
            }
            if self.done {
                return None;
            }
            if let Some(head) = self.head.as_mut() {
                if self.seen < INLINE || !self.may_split {
                    let Some(item) = head.next() else {
                        self.done = true;
                        return None;
                    };
                    if let Ok((key, _)) = &item {
                        self.seen += 1;
                        if self.first.is_none() {
                            self.first = self.key_position(key);
                        }
                        self.last_key.clone_from(key);
                    }
                    return Some(self.open(item));
                }
                if !self.split() {
                    self.may_split = false;
                    continue;
                }
                self.head = None;
            }
            match self.next_part() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Ok(current)) => self.current = current,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
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
