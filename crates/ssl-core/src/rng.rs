//! Every random choice of a run derives from the run seed through this module, by component name.
//!
//! - [`derive()`] turns `(run seed, component name)` into the component's seed: `init`,
//!   `scratch-init`, `data-order`, `masking`, `augmentation`, `subsets`, `probe-init`,
//!   `finetune-init`, `corruption`, `step`, ... Each component draws from its own stream, so
//!   adding randomness to one never shifts another.
//! - Rust-side components (data order, masking, augmentation, few-label subsets) use their own
//!   [`chacha`] generator.
//! - LibTorch-side draws (weight initialisation, dropout, random masks inside a forward pass) use
//!   LibTorch's process-global generator: tch 0.26 exposes no generator handles, and its layer
//!   initialisers always draw from the global one. [`torch_rng`] makes that use exclusive and
//!   seeded: the guard holds a process-wide lock (re-entrant on its thread) and seeds the global
//!   generator. Two runs in one process (tests running in parallel, say) therefore never draw
//!   from each other's stream, and each stays bit-reproducible.
//!
//! ```
//! use ssl_core::rng::{derive, torch_rng};
//! assert_ne!(derive(0, "init"), derive(0, "scratch-init"));
//! let a = { let _g = torch_rng(derive(7, "init")); tch::Tensor::randn([3], tch::kind::FLOAT_CPU) };
//! let b = { let _g = torch_rng(derive(7, "init")); tch::Tensor::randn([3], tch::kind::FLOAT_CPU) };
//! assert_eq!(a, b);
//! ```
use crate::loader::mix_seed;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};

/// The seed of component `name` in a run seeded with `seed`.
pub fn derive(seed: u64, name: &str) -> u64 {
    // FNV-1a of the name: stable across Rust versions (unlike `DefaultHasher`).
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    mix_seed(&[seed, h])
}

/// A generator of its own for component `name`.
pub fn chacha(seed: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive(seed, name))
}

static TORCH_RNG: Mutex<()> = Mutex::new(());

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Exclusive use of LibTorch's global generator, seeded with `seed`, until the guard drops.
/// Nested guards on the same thread re-seed without locking again.
pub fn torch_rng(seed: u64) -> TorchRng {
    let guard = if DEPTH.with(Cell::get) == 0 {
        // A panic while holding the lock (a failed test) leaves the generator usable.
        Some(TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner()))
    } else {
        None
    };
    DEPTH.with(|d| d.set(d.get() + 1));
    let rng = TorchRng { _guard: guard };
    rng.reseed(seed);
    rng
}

/// The guard of [`torch_rng`].
pub struct TorchRng {
    _guard: Option<MutexGuard<'static, ()>>,
}

impl TorchRng {
    /// Seed LibTorch's generator again (e.g. once per training step).
    pub(crate) fn reseed(&self, seed: u64) {
        tch::manual_seed((seed & i64::MAX as u64) as i64);
    }
}

impl Drop for TorchRng {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    fn draw(seed: u64) -> Vec<f32> {
        let _g = torch_rng(seed);
        let mut out = Vec::new();
        for _ in 0..200 {
            out.extend(Vec::<f32>::try_from(Tensor::randn([8], tch::kind::FLOAT_CPU)).unwrap());
            std::thread::yield_now();
        }
        out
    }

    #[test]
    fn parallel_draws_equal_sequential_draws() {
        let alone: Vec<Vec<f32>> = (0..4).map(draw).collect();
        let handles: Vec<_> = (0..4).map(|i| std::thread::spawn(move || draw(i))).collect();
        let together: Vec<Vec<f32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(alone, together);
    }

    #[test]
    fn nested_guards_do_not_deadlock() {
        let outer = torch_rng(1);
        let inner = torch_rng(2);
        drop(inner);
        outer.reseed(3);
        let a = Tensor::randn([2], tch::kind::FLOAT_CPU);
        outer.reseed(3);
        assert_eq!(a, Tensor::randn([2], tch::kind::FLOAT_CPU));
    }
}
