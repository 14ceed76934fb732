//! Safe wrappers over the C++ layer (`csrc/kernels.cpp`): LibTorch's fused and multi-tensor
//! kernels that tch does not bind, bf16 autocast control, and LibTorch's profiler.
//!
//! The layer is compiled against the same LibTorch headers and C++ ABI as `torch-sys`, and
//! receives tensors as the `at::Tensor*` behind [`tch::Tensor::as_ptr`].
use crate::error::{CoreError, Result};
use std::ffi::{c_char, c_int, CStr};
use tch::Tensor;

type RawTensor = *const tch::Tensor;

mod ffi {
    use std::ffi::{c_char, c_int, c_void};
    extern "C" {
        pub(crate) fn ssl_free_error(err: *mut c_char);
        pub(crate) fn ssl_fused_adamw(
            params: *const *const c_void,
            grads: *const *const c_void,
            exp_avgs: *const *const c_void,
            exp_avg_sqs: *const *const c_void,
            steps: *const *const c_void,
            n: c_int,
            lr: f64,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
        ) -> *mut c_char;
        pub(crate) fn ssl_foreach_sgd(
            params: *const *const c_void,
            grads: *const *const c_void,
            bufs: *const *const c_void,
            n: c_int,
            lr: f64,
            momentum: f64,
            weight_decay: f64,
            nesterov: c_int,
            first: c_int,
        ) -> *mut c_char;
        pub(crate) fn ssl_clip_grad_norm(
            grads: *const *const c_void,
            n: c_int,
            max_norm: f64,
            norm_out: *const c_void,
        ) -> *mut c_char;
        pub(crate) fn ssl_set_bf16_autocast(enabled: c_int) -> *mut c_char;
        pub(crate) fn ssl_profiler_start(record_shapes: c_int, cuda: c_int) -> *mut c_char;
        pub(crate) fn ssl_profiler_stop(trace_path: *const c_char) -> *mut c_char;
        pub(crate) fn ssl_bf16_autocast_enabled() -> c_int;
        pub(crate) fn ssl_serial_thread() -> c_int;
    }
}

fn ptrs(ts: &[&Tensor]) -> Vec<*const std::ffi::c_void> {
    ts.iter().map(|t| t.as_ptr() as RawTensor as *const std::ffi::c_void).collect()
}

/// The message of an error string the C++ layer returned (`csrc/guarded.h`), freed here; `None`
/// for success (null). The one reader of those strings, for every C++ file.
pub(crate) fn take_error(err: *mut c_char) -> Option<String> {
    if err.is_null() {
        return None;
    }
    // SAFETY: a non-null return is a NUL-terminated string malloc'ed by the C++ layer, freed once.
    let message = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    unsafe { ffi::ssl_free_error(err) };
    Some(message)
}

fn check(kernel: &'static str, err: *mut c_char) -> Result<()> {
    match take_error(err) {
        None => Ok(()),
        Some(message) => Err(CoreError::Kernel { kernel, message }),
    }
}

/// Make LibTorch's operators called from the current thread run serially (a data loader's
/// threads): returns the intra-op thread count the thread now sees, 1 unless LibTorch was built
/// without OpenMP's per-thread counts. A thread that is not the training thread and runs large
/// operators would otherwise get an OpenMP team of its own, and with more OpenMP threads than
/// cores the runtime cuts every spin-wait short: the training thread's operators then each wait
/// for a sleeping worker to wake (see `csrc/kernels.cpp`).
///
/// ```
/// let seen = std::thread::spawn(ssl_core::kernels::serial_thread).join().unwrap();
/// assert_eq!(seen, 1);
/// ```
pub fn serial_thread() -> i32 {
    // SAFETY: no arguments; the C++ side catches every exception.
    unsafe { ffi::ssl_serial_thread() }
}

/// Start LibTorch's profiler (Kineto) on this thread: operators (with their input shapes when
/// `record_shapes`) and, with `cuda`, CUDA kernels. See [`crate::profile`].
pub fn profiler_start(record_shapes: bool, cuda: bool) -> Result<()> {
    // SAFETY: plain integers in; the C++ layer catches every exception.
    check("profiler_start", unsafe { ffi::ssl_profiler_start(record_shapes as c_int, cuda as c_int) })
}

/// Stop the profiler [`profiler_start`] started and write its Chrome/Perfetto trace to `path`.
pub(crate) fn profiler_stop(path: &std::path::Path) -> Result<()> {
    let c = std::ffi::CString::new(path.display().to_string())
        .map_err(|_| CoreError::Kernel { kernel: "profiler_stop", message: "a NUL byte in the path".into() })?;
    // SAFETY: a NUL-terminated path that outlives the call; the C++ layer catches every exception.
    check("profiler_stop", unsafe { ffi::ssl_profiler_stop(c.as_ptr()) })
}

fn same_len(kernel: &'static str, lens: &[usize]) -> Result<c_int> {
    if lens.windows(2).any(|w| w[0] != w[1]) {
        return Err(CoreError::Kernel { kernel, message: format!("tensor lists differ in length: {lens:?}") });
    }
    c_int::try_from(lens[0]).map_err(|_| CoreError::Kernel { kernel, message: "too many tensors".into() })
}

/// One fused AdamW step (`at::_fused_adamw_`) over parallel lists of tensors.
///
/// `steps` are float32 scalar tensors holding the step count *after* this step: the kernel
/// divides by `1 - beta^step`, so a step of 0 would give NaN. Parameters are updated in place.
#[allow(clippy::too_many_arguments)]
pub fn fused_adamw(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    steps: &[&Tensor],
    lr: f64,
    betas: (f64, f64),
    weight_decay: f64,
    eps: f64,
) -> Result<()> {
    let n = same_len("fused_adamw", &[params.len(), grads.len(), exp_avgs.len(), exp_avg_sqs.len(), steps.len()])?;
    if n == 0 {
        return Ok(());
    }
    let (p, g, m, v, s) = (ptrs(params), ptrs(grads), ptrs(exp_avgs), ptrs(exp_avg_sqs), ptrs(steps));
    // SAFETY: all pointers come from live tch tensors borrowed for the duration of the call.
    let err = unsafe {
        ffi::ssl_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n,
            lr,
            betas.0,
            betas.1,
            weight_decay,
            eps,
        )
    };
    check("fused_adamw", err)
}

/// One SGD step with momentum (Nesterov if asked) through the `_foreach_*` multi-tensor ops.
#[allow(clippy::too_many_arguments)]
pub(crate) fn foreach_sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    momentum_bufs: &[&Tensor],
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
    first_step: bool,
) -> Result<()> {
    let n = same_len("foreach_sgd", &[params.len(), grads.len(), momentum_bufs.len()])?;
    if n == 0 {
        return Ok(());
    }
    let (p, g, b) = (ptrs(params), ptrs(grads), ptrs(momentum_bufs));
    // SAFETY: as in `fused_adamw`.
    let err = unsafe {
        ffi::ssl_foreach_sgd(
            p.as_ptr(),
            g.as_ptr(),
            b.as_ptr(),
            n,
            lr,
            momentum,
            weight_decay,
            nesterov as c_int,
            first_step as c_int,
        )
    };
    check("foreach_sgd", err)
}

/// Total L2 norm of `grads`, and, when `max_norm > 0`, scale them in place so the norm is at
/// most `max_norm`. Everything stays on the device: the returned scalar tensor is not read
/// back, so no host synchronisation happens here.
pub(crate) fn clip_grad_norm(grads: &[&Tensor], max_norm: f64) -> Result<Tensor> {
    let out = match grads.first() {
        Some(g) => Tensor::zeros([], (tch::Kind::Float, g.device())),
        None => return Ok(Tensor::zeros([], (tch::Kind::Float, tch::Device::Cpu))),
    };
    let g = ptrs(grads);
    // SAFETY: as in `fused_adamw`; `out` outlives the call.
    let err = unsafe {
        ffi::ssl_clip_grad_norm(
            g.as_ptr(),
            g.len() as c_int,
            max_norm,
            out.as_ptr() as RawTensor as *const std::ffi::c_void,
        )
    };
    check("clip_grad_norm", err)?;
    Ok(out)
}

/// Enables bf16 autocast on CUDA for as long as the guard lives (tch's own autocast is
/// fp16-only). On a CPU run this is a no-op guard.
pub struct Bf16Autocast {
    active: bool,
}

impl Bf16Autocast {
    /// Turn bf16 autocast on if `enabled` and the device is CUDA.
    pub fn new(enabled: bool, device: tch::Device) -> Result<Self> {
        let active = enabled && device.is_cuda();
        if active {
            // SAFETY: plain FFI call without pointers.
            check("set_bf16_autocast", unsafe { ffi::ssl_set_bf16_autocast(1) })?;
        }
        Ok(Self { active })
    }

    /// Whether CUDA autocast is currently on in this thread.
    pub fn is_enabled() -> bool {
        // SAFETY: plain FFI call without pointers.
        unsafe { ffi::ssl_bf16_autocast_enabled() != 0 }
    }
}

impl Drop for Bf16Autocast {
    fn drop(&mut self) {
        if self.active {
            // SAFETY: plain FFI call; an error while switching off cannot be reported from drop.
            let err = unsafe { ffi::ssl_set_bf16_autocast(0) };
            let _ = check("set_bf16_autocast", err);
        }
    }
}
