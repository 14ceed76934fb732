//! Choosing the device from a `cpu|cuda|cuda:N` string.
use crate::error::{CoreError, Result};
use tch::Device;

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
