//! The data loader: parallel decode/augment with rayon and a bounded prefetch queue filled by a
//! background thread.
//!
//! Everything random is derived from `(seed, epoch, index)`: the epoch's shuffle from
//! `(seed, epoch)` and each item's augmentation from `(seed, epoch, position)`. A loader started at
//! a saved [`LoaderPosition`] therefore yields exactly the batches an uninterrupted loader would
//! have yielded from there, without replaying the skipped ones.
//!
//! ```
//! use ssl_core::loader::{DataSource, Loader, LoaderPosition};
//! use rand::Rng;
//! struct Squares;
//! impl DataSource for Squares {
//!     type Item = i64;
//!     type Batch = Vec<i64>;
//!     fn len(&self) -> usize { 10 }
//!     fn get(&self, i: usize, _rng: &mut rand_chacha::ChaCha8Rng) -> Result<i64, ssl_core::loader::Skipped> { Ok((i * i) as i64) }
//!     fn collate(&self, items: Vec<i64>, _rng: &mut rand_chacha::ChaCha8Rng) -> Vec<i64> { items }
//! }
//! let mut loader = Loader::new(std::sync::Arc::new(Squares), 4, 7, LoaderPosition::default(), 2, 1);
//! let first = loader.next_batch().unwrap();
//! assert_eq!(first.batch.len(), 4);
//! ```
use crate::error::{CoreError, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use ssl_records::skipped::Skipped;

/// A source of training items that a modality implements.
pub trait DataSource: Send + Sync + 'static {
    /// One decoded, augmented example.
    type Item: Send;
    /// A collated batch (usually a few CPU tensors).
    type Batch: Send + 'static;
    /// Number of items in one epoch.
    fn len(&self) -> usize;
    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Decode and augment item `index`. An `Err` skips the item (the record says which file or
    /// record, and why); the loader counts and logs it.
    fn get(&self, index: usize, rng: &mut ChaCha8Rng) -> std::result::Result<Self::Item, Skipped>;
    /// Turn items into a batch (this is where dynamic masking may happen).
    fn collate(&self, items: Vec<Self::Item>, rng: &mut ChaCha8Rng) -> Self::Batch;
    /// The batch with its host tensors page-locked for `device` ([`crate::device::pin`], which
    /// leaves them as they are unless `device` is a CUDA device), called in the loader's thread
    /// after [`DataSource::collate`]: the step's copies to the device are then asynchronous.
    /// The default keeps the batch as it is.
    fn pin_memory(&self, batch: Self::Batch, _device: tch::Device) -> std::result::Result<Self::Batch, tch::TchError> {
        Ok(batch)
    }
}

/// Where a loader's batches go: the data-parallel shard it loads (rank, ranks) and the training
/// device its batches are pinned for ([`DataSource::pin_memory`]); and when it gives up: after
/// `max_failed_in_row` inputs in a row that fail to load, it ends with an error naming the last
/// of them, instead of looking for a readable one forever.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub shard: (usize, usize),
    pub device: tch::Device,
    pub max_failed_in_row: u64,
}

/// The default of [`Target::max_failed_in_row`] (and of `TrainConfig::max_failed_inputs_in_row`).
pub(crate) const MAX_FAILED_IN_ROW: u64 = 1000;

impl Default for Target {
    /// One process, training on the CPU.
    fn default() -> Self {
        Self { shard: (0, 1), device: tch::Device::Cpu, max_failed_in_row: MAX_FAILED_IN_ROW }
    }
}

/// The inputs that failed in a row, and the last few reasons.
#[derive(Default)]
struct FailureRun {
    count: u64,
    last: std::collections::VecDeque<String>,
}

impl FailureRun {
    fn failed(&mut self, reason: String) {
        self.count += 1;
        if self.last.len() == 3 {
            self.last.pop_front();
        }
        self.last.push_back(reason);
    }

    fn describe(&self) -> String {
        let last: Vec<&str> = self.last.iter().map(String::as_str).collect();
        format!(
            "{} inputs in a row failed to load (the last: {}); check the data, or raise \
             max_failed_inputs_in_row in the training config",
            self.count,
            last.join("; ")
        )
    }
}

/// Where the loader is: the resume point stored in every checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderPosition {
    pub epoch: u64,
    /// Index of the next batch within the epoch.
    pub batch: u64,
    pub seed: u64,
}

/// One batch and the position *after* it.
pub struct LoadedBatch<B> {
    pub batch: B,
    pub next: LoaderPosition,
}

/// Mix several numbers into one seed (SplitMix64 finaliser).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        h ^= p.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(h << 6).wrapping_add(h >> 2);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

/// The shuffled order of one epoch.
pub(crate) fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(&[seed, epoch, 0xE90C])));
    order
}

/// A loader running on a background thread with a bounded queue of `prefetch` batches.
pub struct Loader<B> {
    rx: Receiver<std::result::Result<LoadedBatch<B>, String>>,
    stop: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl<B: Send + 'static> Loader<B> {
    /// Start loading batches of `batch_size` from `position` (its `seed` is replaced by `seed`).
    /// Incomplete last batches are dropped so shapes stay static. Items are decoded by a pool of
    /// `threads` workers of the loader's own (not rayon's global pool, whose threads would
    /// compete with LibTorch's for the cores); the batches do not depend on `threads`.
    pub fn new<S: DataSource<Batch = B>>(
        source: Arc<S>,
        batch_size: usize,
        seed: u64,
        position: LoaderPosition,
        prefetch: usize,
        threads: usize,
    ) -> Self {
        Self::sharded(source, batch_size, seed, position, prefetch, threads, Target::default())
    }

    /// A loader for rank `target.shard.0` of `target.shard.1` data-parallel processes, whose
    /// batches are pinned for `target.device` ([`DataSource::pin_memory`]). Like PyTorch's
    /// `DistributedSampler`: every rank shuffles the epoch the same way, a global batch is
    /// `batch_size * ranks` consecutive items of that order, and this rank takes its
    /// `batch_size` slice of it. Items are augmented from their position in the global order, so
    /// the global batch holds exactly the items, with exactly the augmentation, that one process
    /// with a batch of `batch_size * ranks` would load. The position (epoch, global batch) is
    /// the same on every rank.
    pub fn sharded<S: DataSource<Batch = B>>(
        source: Arc<S>,
        batch_size: usize,
        seed: u64,
        position: LoaderPosition,
        prefetch: usize,
        threads: usize,
        target: Target,
    ) -> Self {
        let (tx, rx) = sync_channel(prefetch.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let skipped = Arc::new(AtomicU64::new(0));
        let thread = LoaderThread {
            source,
            batch_size,
            seed,
            position,
            threads,
            target,
            tx,
            stop: stop.clone(),
            skipped: skipped.clone(),
        };
        let handle = std::thread::spawn(move || thread.run());
        Self { rx, stop, skipped, handle: Some(handle) }
    }

    /// The next batch; blocks until the background thread has one ready.
    pub fn next_batch(&mut self) -> Result<LoadedBatch<B>> {
        match self.rx.recv() {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(CoreError::Loader(e)),
            Err(_) => Err(CoreError::Loader("loader thread stopped".into())),
        }
    }

    /// Items skipped so far because they failed to decode.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// What the loader's background thread owns.
struct LoaderThread<S: DataSource> {
    source: Arc<S>,
    batch_size: usize,
    seed: u64,
    position: LoaderPosition,
    threads: usize,
    target: Target,
    tx: std::sync::mpsc::SyncSender<std::result::Result<LoadedBatch<S::Batch>, String>>,
    stop: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
}

impl<S: DataSource> LoaderThread<S> {
    /// Load batches in order until told to stop, the receiver is gone, or loading fails (the
    /// reason is sent).
    fn run(self) {
        if let Err(e) = self.load() {
            let _ = self.tx.send(Err(e));
        }
    }

    fn load(&self) -> std::result::Result<(), String> {
        // The loader's tensors (collate) and its decode threads never open an OpenMP team of
        // their own: the cores' spin-waits stay the training thread's (kernels::serial_thread).
        crate::kernels::serial_thread();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads.max(1))
            .start_handler(|_| {
                crate::kernels::serial_thread();
            })
            .build()
            .map_err(|e| format!("cannot start {} loader threads: {e}", self.threads))?;
        let (rank, ranks) = (self.target.shard.0, self.target.shard.1.max(1));
        let (batch_size, seed) = (self.batch_size, self.seed);
        let len = self.source.len();
        let global = batch_size.max(1) * ranks;
        let per_epoch = (len / global) as u64;
        if per_epoch == 0 {
            let what = match ranks {
                1 => format!("one batch of {batch_size}"),
                n => format!("one global batch of {global} ({n} processes x {batch_size})"),
            };
            return Err(format!("{len} items cannot fill {what}"));
        }
        let mut pos = LoaderPosition { seed, ..self.position };
        let mut failures = FailureRun::default();
        let mut order = epoch_order(len, seed, pos.epoch);
        while !self.stop.load(Ordering::Relaxed) {
            if pos.batch >= per_epoch {
                pos.epoch += 1;
                pos.batch = 0;
                order = epoch_order(len, seed, pos.epoch);
            }
            let start = pos.batch as usize * global + rank * batch_size;
            let items = self.items(&pool, &order[start..start + batch_size], start, pos.epoch, &mut failures)?;
            pos.batch += 1;
            if items.is_empty() {
                continue;
            }
            let collate_seed = match ranks {
                1 => mix_seed(&[seed, pos.epoch, pos.batch, 0xC011]),
                _ => mix_seed(&[seed, pos.epoch, pos.batch, 0xC011, rank as u64]),
            };
            let mut rng = ChaCha8Rng::seed_from_u64(collate_seed);
            let collated = crate::torch_error::catch(|| self.source.collate(items, &mut rng))
                .map_err(|e| format!("collating a batch failed in LibTorch: {e}"))?;
            let batch = self
                .source
                .pin_memory(collated, self.target.device)
                .map_err(|e| format!("cannot page-lock a batch for {:?}: {e}", self.target.device))?;
            if self.tx.send(Ok(LoadedBatch { batch, next: pos })).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The items at `idx` (global positions from `start` in epoch `epoch`), decoded in parallel;
    /// those that fail are skipped and counted, and too many in a row end the loader.
    fn items(
        &self,
        pool: &rayon::ThreadPool,
        idx: &[usize],
        start: usize,
        epoch: u64,
        failures: &mut FailureRun,
    ) -> std::result::Result<Vec<S::Item>, String> {
        let seed = self.seed;
        let results: Vec<std::result::Result<S::Item, Skipped>> = pool.install(|| {
            idx.par_iter()
                .enumerate()
                .map(|(j, &i)| {
                    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[seed, epoch, (start + j) as u64]));
                    self.source.get(i, &mut rng)
                })
                .collect()
        });
        let mut items = Vec::with_capacity(idx.len());
        for r in results {
            match r {
                Ok(item) => {
                    items.push(item);
                    *failures = FailureRun::default();
                }
                Err(e) => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    eprintln!("warning: skipped an input: {e}");
                    failures.failed(e.to_string());
                }
            }
        }
        if failures.count >= self.target.max_failed_in_row.max(1) {
            return Err(failures.describe());
        }
        Ok(items)
    }
}

impl<B> Drop for Loader<B> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Drain so a blocked sender wakes up and sees the stop flag.
        while self.rx.try_recv().is_ok() {}
        if let Some(h) = self.handle.take() {
            while !h.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let _ = h.join();
        }
    }
}
