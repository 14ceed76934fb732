//! One run per run directory: a second process on the same `--out` refuses instead of
//! interleaving checkpoints and metrics.
use crate::error::{CoreError, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// An exclusive lock on `<run>/.lock`, held until dropped (and released by the OS if the process
/// dies, so a killed run never leaves a stale lock behind).
pub struct RunLock {
    _file: File,
}

impl RunLock {
    pub(crate) fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CoreError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(file, "{}", std::process::id());
                Ok(Self { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                Err(CoreError::InvalidArgument(format!(
                    "{} is in use by another run (process {}); wait for it to finish or choose another --out",
                    run_dir.display(),
                    holder.trim()
                )))
            }
            Err(TryLockError::Error(e)) => Err(CoreError::io(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_run_is_refused_until_the_first_is_released() {
        let d = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(d.path()).unwrap();
        let e = RunLock::acquire(d.path()).err().expect("the second lock is refused").to_string();
        assert!(e.contains("in use by another run") && e.contains(&std::process::id().to_string()), "{e}");
        drop(first);
        RunLock::acquire(d.path()).unwrap();
    }
}
