//! The loader: deterministic order, exact restart from a position, counted skips.
use rand_chacha::ChaCha8Rng;
use ssl_core::loader::{DataSource, Loader, LoaderPosition};
use std::sync::Arc;

struct Numbers {
    bad: Vec<usize>,
}

impl DataSource for Numbers {
    type Item = (usize, u32);
    type Batch = Vec<(usize, u32)>;
    fn len(&self) -> usize {
        20
    }
    fn get(&self, i: usize, rng: &mut ChaCha8Rng) -> Result<Self::Item, ssl_core::loader::Skipped> {
        if self.bad.contains(&i) {
            return Err(ssl_core::loader::Skipped::record("numbers", i as u64, "corrupt"));
        }
        Ok((i, rand::Rng::random::<u32>(rng)))
    }
    fn collate(&self, items: Vec<Self::Item>, _rng: &mut ChaCha8Rng) -> Self::Batch {
        items
    }
}

fn batches(start: LoaderPosition, n: usize, bad: Vec<usize>) -> Vec<(Vec<(usize, u32)>, LoaderPosition)> {
    batches_with_threads(start, n, bad, 2)
}

fn batches_with_threads(
    start: LoaderPosition,
    n: usize,
    bad: Vec<usize>,
    threads: usize,
) -> Vec<(Vec<(usize, u32)>, LoaderPosition)> {
    let mut l = Loader::new(Arc::new(Numbers { bad }), 4, 5, start, 2, threads);
    (0..n).map(|_| l.next_batch().map(|b| (b.batch, b.next)).unwrap()).collect()
}

#[test]
fn restarting_at_a_position_continues_the_same_stream() {
    let all = batches(LoaderPosition::default(), 12, vec![]);
    // Epochs of 5 batches: every index once per epoch, in a new order each epoch.
    let mut epoch0: Vec<usize> = all[..5].iter().flat_map(|(b, _)| b.iter().map(|x| x.0)).collect();
    epoch0.sort_unstable();
    assert_eq!(epoch0, (0..20).collect::<Vec<_>>());
    assert_ne!(all[0].0, all[5].0);
    let resumed = batches(all[6].1, 5, vec![]);
    assert_eq!(resumed.iter().map(|b| &b.0).collect::<Vec<_>>(), all[7..12].iter().map(|b| &b.0).collect::<Vec<_>>());
}

#[test]
fn failing_items_are_skipped_and_counted() {
    let mut l = Loader::new(Arc::new(Numbers { bad: vec![3, 7] }), 4, 5, LoaderPosition::default(), 2, 2);
    let total: usize = (0..5).map(|_| l.next_batch().unwrap().batch.len()).sum();
    assert_eq!(total, 18);
    assert_eq!(l.skipped(), 2);
}

#[test]
fn the_stream_does_not_depend_on_the_number_of_loader_threads() {
    let one = batches_with_threads(LoaderPosition::default(), 7, vec![2], 1);
    let three = batches_with_threads(LoaderPosition::default(), 7, vec![2], 3);
    assert_eq!(one, three);
}

/// Records the intra-op thread count LibTorch sees in the decode threads and in collate.
struct ThreadCounts;

impl DataSource for ThreadCounts {
    type Item = i32;
    type Batch = Vec<i32>;
    fn len(&self) -> usize {
        64
    }
    fn get(&self, _: usize, _: &mut ChaCha8Rng) -> Result<i32, ssl_core::loader::Skipped> {
        Ok(tch::get_num_threads())
    }
    fn collate(&self, mut items: Vec<i32>, _: &mut ChaCha8Rng) -> Vec<i32> {
        // A large operator, as a real collate makes: it must not open an OpenMP team here.
        let _ = tch::Tensor::zeros([1 << 18], (tch::Kind::Float, tch::Device::Cpu)).sum(tch::Kind::Float);
        items.push(tch::get_num_threads());
        items
    }
}

#[test]
fn the_loaders_threads_run_libtorch_serially() {
    tch::set_num_threads(2);
    let mut loader = Loader::new(Arc::new(ThreadCounts), 8, 1, LoaderPosition::default(), 2, 2);
    for _ in 0..4 {
        let counts = loader.next_batch().unwrap().batch;
        assert!(counts.iter().all(|&n| n == 1), "the loader's threads see {counts:?} intra-op threads");
    }
    // The calling thread keeps its own count.
    assert_eq!(tch::get_num_threads(), 2);
}

/// A source that records the device the loader pins its batches for, and refuses to pin when
/// told to.
struct Pinned {
    refuse: bool,
    seen: std::sync::Mutex<Vec<tch::Device>>,
}

impl DataSource for Pinned {
    type Item = i64;
    type Batch = tch::Tensor;
    fn len(&self) -> usize {
        8
    }
    fn get(&self, i: usize, _rng: &mut ChaCha8Rng) -> Result<i64, ssl_core::loader::Skipped> {
        Ok(i as i64)
    }
    fn collate(&self, items: Vec<i64>, _rng: &mut ChaCha8Rng) -> tch::Tensor {
        tch::Tensor::from_slice(&items)
    }
    fn pin_memory(&self, batch: tch::Tensor, device: tch::Device) -> Result<tch::Tensor, tch::TchError> {
        self.seen.lock().unwrap().push(device);
        match self.refuse {
            true => Err(tch::TchError::Torch("no page-locked memory".into())),
            false => ssl_core::device::pin(&batch, device),
        }
    }
}

#[test]
fn batches_are_pinned_for_the_training_device_in_the_loader_thread() {
    use ssl_core::loader::Target;
    let source = Arc::new(Pinned { refuse: false, seen: Default::default() });
    let target = Target { shard: (0, 1), device: tch::Device::Cpu, ..Default::default() };
    let mut l = Loader::sharded(source.clone(), 4, 5, LoaderPosition::default(), 1, 1, target);
    let b = l.next_batch().unwrap().batch;
    assert_eq!(b.size(), [4]);
    drop(l);
    let seen = source.seen.lock().unwrap().clone();
    assert!(!seen.is_empty() && seen.iter().all(|d| *d == tch::Device::Cpu), "{seen:?}");

    // A batch that cannot be pinned ends the loader with the reason, not a panic or a hang.
    let refusing = Arc::new(Pinned { refuse: true, seen: Default::default() });
    let mut l = Loader::sharded(refusing, 4, 5, LoaderPosition::default(), 1, 1, target);
    let err = l.next_batch().err().expect("an unpinnable batch is an error").to_string();
    assert!(err.contains("cannot page-lock a batch") && err.contains("no page-locked memory"), "{err}");
}
