//! A run killed with SIGKILL (possibly mid-checkpoint) and resumed produces exactly the losses of
//! a run that never stopped.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const STEPS: u64 = 150;

fn losses(dir: &Path) -> Vec<(u64, f64)> {
    ssl_core::trainer::read_metrics(dir).iter().map(|m| (m.step, m.loss)).collect()
}

fn run(dir: &Path, resume: bool) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_toy_train"));
    c.arg(dir).arg(STEPS.to_string());
    if resume {
        c.arg("--resume");
    }
    assert!(c.status().unwrap().success());
}

#[test]
fn sigkill_during_training_then_resume_matches_an_uninterrupted_run() {
    let reference = tempfile::tempdir().unwrap();
    run(reference.path(), false);
    let want = losses(reference.path());
    assert_eq!(want.len() as u64, STEPS);

    for kill_after_ms in [15u64, 40, 90] {
        let dir = tempfile::tempdir().unwrap();
        let mut child =
            Command::new(env!("CARGO_BIN_EXE_toy_train")).arg(dir.path()).arg(STEPS.to_string()).spawn().unwrap();
        // Wait for the first checkpoint, then kill at an arbitrary moment (checkpoints are written
        // every step, so the kill often lands inside a save).
        let start = Instant::now();
        while ssl_core::checkpoint::latest(dir.path()).is_none() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        let _ = child.wait();
        let done_before =
            ssl_core::checkpoint::latest(dir.path()).map(|c| ssl_core::checkpoint::read_state(&c).unwrap().step);
        run(dir.path(), true);
        assert_eq!(losses(dir.path()), want, "killed after the checkpoint of step {done_before:?}");
    }
}
