//! SIGINT and SIGTERM during a run: the first one asks the run to stop at the next safe point
//! (the trainer saves a checkpoint and returns [`crate::CoreError::Interrupted`]; the evaluation
//! stops between two subsets), a second one ends the process at once.
//!
//! Nothing changes until [`install`] is called: the run pipeline calls it, a library user of the
//! trainer decides for themselves.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Catch SIGINT and SIGTERM for the rest of the process (idempotent).
pub fn install() -> std::io::Result<()> {
    if REQUESTED.get().is_some() {
        return Ok(());
    }
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Order matters: the conditional shutdown sees the flag before this signal sets it, so
        // only a second signal ends the process (with the conventional 128 + signal status).
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&flag))?;
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    let _ = REQUESTED.set(flag);
    Ok(())
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.get().is_some_and(|f| f.load(Ordering::Relaxed))
}
