//! Choosing the device from a `cpu|cuda|cuda:N` string, and moving batches to it.
use crate::error::{CoreError, Result};
use tch::{Device, Tensor};

/// Parse `cpu`, `cuda` or `cuda:N`. Asking for CUDA where LibTorch sees no GPU is an error, so a
/// run never silently falls back to the CPU.
///
/// ```
/// assert_eq!(ssl_core::device::parse("cpu").unwrap(), tch::Device::Cpu);
/// assert!(ssl_core::device::parse("tpu").is_err());
/// ```
pub fn parse(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let device = match spec.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => Device::Cuda(0),
        s if s.starts_with("cuda:") => {
            Device::Cuda(s[5..].parse().map_err(|_| CoreError::InvalidArgument(format!("bad CUDA index in `{s}`")))?)
        }
        other => {
            return Err(CoreError::InvalidArgument(format!("unknown device `{other}` (expected cpu, cuda or cuda:N)")))
        }
    };
    if !tch::Cuda::is_available() {
        return Err(CoreError::InvalidArgument(
            "--device cuda was asked for, but LibTorch sees no CUDA GPU (check the driver and that the CUDA build of LibTorch is linked)".into(),
        ));
    }
    if let Device::Cuda(i) = device {
        if i as i64 >= tch::Cuda::device_count() {
            return Err(CoreError::InvalidArgument(format!("CUDA device {i} does not exist")));
        }
    }
    Ok(device)
}

/// Check `--threads` (LibTorch's intra-op threads): at least one. The one rule every command uses.
///
/// ```
/// assert!(ssl_core::device::check_threads(Some(2)).is_ok() && ssl_core::device::check_threads(None).is_ok());
/// assert!(ssl_core::device::check_threads(Some(0)).is_err());
/// ```
pub fn check_threads(threads: Option<i32>) -> Result<()> {
    match threads {
        Some(t) if t < 1 => Err(CoreError::InvalidArgument(format!("--threads must be at least 1, got {t}"))),
        _ => Ok(()),
    }
}

/// Check `--threads` and give LibTorch that many intra-op threads (`None`: its default).
pub fn set_threads(threads: Option<i32>) -> Result<()> {
    check_threads(threads)?;
    if let Some(t) = threads {
        tch::set_num_threads(t);
    }
    Ok(())
}

/// `t` in page-locked ("pinned") host memory when `device` is a CUDA device, as PyTorch's
/// `DataLoader(pin_memory=True)` leaves its batches; `t` itself otherwise. The loader calls it in
/// its own thread ([`crate::loader::DataSource::pin_memory`]), so the step's [`upload`] is an
/// asynchronous copy the host does not wait for.
///
/// ```
/// let t = tch::Tensor::from_slice(&[1.0f32, 2.0]);
/// let same = ssl_core::device::pin(&t, tch::Device::Cpu).unwrap();
/// assert_eq!(same.data_ptr(), t.data_ptr());
/// ```
pub fn pin(t: &Tensor, device: Device) -> std::result::Result<Tensor, tch::TchError> {
    match device {
        Device::Cuda(_) if t.device() == Device::Cpu => t.f_pin_memory(device),
        _ => Ok(t.shallow_clone()),
    }
}

/// `t` on `device`: a non-blocking copy when `t` is pinned host memory going to a CUDA device
/// (the copy is ordered on the device's current stream, before the kernels that read it), an
/// ordinary one otherwise, and `t` itself when it is there already. Every batch goes to the
/// training device through here.
///
/// ```
/// let t = tch::Tensor::from_slice(&[1i64, 2, 3]);
/// let on = ssl_core::device::upload(&t, tch::Device::Cpu).unwrap();
/// assert_eq!(on.data_ptr(), t.data_ptr());
/// ```
pub fn upload(t: &Tensor, device: Device) -> std::result::Result<Tensor, tch::TchError> {
    let non_blocking = device.is_cuda() && t.device() == Device::Cpu && t.f_is_pinned(device)?;
    t.f_to_device_(device, t.kind(), non_blocking, false)
}
