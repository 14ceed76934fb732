//! LibTorch failures as values, not crashes.
//!
//! tch's non-`f_` methods panic when LibTorch throws (a failed allocation, a shape mismatch).
//! [`catch`] runs a closure and turns such a panic into a [`TorchFailure`] with LibTorch's own
//! message, without printing the panic (the caller reports the error). The trainer wraps every
//! step in it, the `ssl` binary every command: whatever a user's input or config makes LibTorch
//! do, the process ends with a typed error and exit 1, never a Rust backtrace and exit 101.
//!
//! ```
//! use ssl_core::torch_error::catch;
//! use tch::{Device, Kind, Tensor};
//! let a = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
//! let b = Tensor::zeros([4, 5], (Kind::Float, Device::Cpu));
//! let failure = catch(|| a.matmul(&b)).unwrap_err();
//! assert!(failure.message.contains("cannot be multiplied"), "{}", failure.message);
//! assert!(!failure.out_of_memory());
//! ```
use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Depth of [`catch`] calls on this thread: their panics are reported by the caller.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

static QUIET_HOOK: Once = Once::new();

/// A panic caught by [`catch`]: LibTorch's message (its first lines, without the C++ backtrace).
#[derive(Debug, Clone, PartialEq)]
pub struct TorchFailure {
    pub message: String,
}

impl TorchFailure {
    /// Whether the failure is an allocation that did not fit (CPU or CUDA).
    pub fn out_of_memory(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        ["can't allocate memory", "cannot allocate memory", "out of memory", "bad_alloc"].iter().any(|p| m.contains(p))
    }
}

impl std::fmt::Display for TorchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Run `f`; a panic inside it (on this thread) comes back as `Err` and is not printed.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, TorchFailure> {
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    result.map_err(|payload| TorchFailure { message: message_of(payload.as_ref()) })
}

/// The readable part of a panic payload: tch's `unwrap` of a `TchError` gives
/// ``called `Result::unwrap()` on an `Err` value: Torch("<message>\nException raised from ...")``;
/// the message is kept, the escaped C++ backtrace dropped.
pub(crate) fn message_of(payload: &(dyn Any + Send)) -> String {
    let raw = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".into());
    let inner = match raw.find("Torch(\"") {
        Some(i) => &raw[i + 7..],
        None => raw.as_str(),
    };
    // The message is LibTorch's first line; what follows is its C++ backtrace ("Exception raised
    // from ...", "frame #0: ..."), escaped (`\n`) inside tch's debug form, or not.
    let cut = ["\\n", "\n", "\")"].iter().filter_map(|m| inner.find(m)).min().unwrap_or(inner.len());
    inner[..cut].trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn a_libtorch_allocation_failure_is_caught_and_named() {
        // 2^40 floats (4 TiB): refused by the allocator on any machine this runs on.
        let f = catch(|| Tensor::empty([1i64 << 40], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(f.out_of_memory(), "{}", f.message);
        assert!(!f.message.contains("Exception raised from"), "{}", f.message);
        // The thread is usable afterwards, and an ordinary panic outside `catch` still panics.
        assert_eq!(catch(|| 2 + 2), Ok(4));
        assert!(std::panic::catch_unwind(|| panic!("plain")).is_err());
    }

    #[test]
    fn messages_lose_the_cpp_backtrace() {
        let payload: Box<dyn Any + Send> = Box::new(String::from(
            "called `Result::unwrap()` on an `Err` value: Torch(\"shape '[2]' is invalid\\nException raised from x at y.cpp:1\")",
        ));
        assert_eq!(message_of(payload.as_ref()), "shape '[2]' is invalid");
        let payload: Box<dyn Any + Send> = Box::new(String::from(
            "called `Result::unwrap()` on an `Err` value: Torch(\"[enforce fail at alloc_cpu.cpp:127] err == 0. \
             DefaultCPUAllocator: can't allocate memory\\nframe #0: c10::ThrowEnforceNotMet\")",
        ));
        let m = message_of(payload.as_ref());
        assert!(m.ends_with("can't allocate memory") && !m.contains("frame"), "{m}");
        let payload: Box<dyn Any + Send> = Box::new("index out of bounds");
        assert_eq!(message_of(payload.as_ref()), "index out of bounds");
    }
}
