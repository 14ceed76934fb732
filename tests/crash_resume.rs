//! A run killed with SIGKILL (possibly mid-checkpoint) and resumed produces exactly the losses of
//! a run that never stopped.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const STEPS: u64 = 150;

fn losses(dir: &Path) -> Vec<(u64, f64)> {
    ssl_core::trainer::read_metrics(dir).iter().map(|m| (m.step, m.loss)).collect()
}

/// The toy trainer on `dir` for [`STEPS`] steps, with `extra` flags.
fn toy(dir: &Path, extra: &[&str], resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_toy_train"));
    c.arg(dir).arg(STEPS.to_string()).args(extra);
    if resume {
        c.arg("--resume");
    }
    c
}

fn run(dir: &Path, resume: bool) {
    assert!(toy(dir, &[], resume).status().unwrap().success());
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

/// Damage the newest checkpoint of a finished-at-`stop` run in `damage`'s way, resume, and compare.
fn resume_past_damage(damage: impl Fn(&Path)) {
    let reference = tempfile::tempdir().unwrap();
    run(reference.path(), false);
    let want = losses(reference.path());
    let dir = tempfile::tempdir().unwrap();
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_toy_train")).arg(dir.path()).arg(STEPS.to_string()).spawn().unwrap();
    let start = Instant::now();
    while ssl_core::checkpoint::list(dir.path()).len() < 2 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let all = ssl_core::checkpoint::list(dir.path());
    assert!(all.len() >= 2, "two checkpoints are kept");
    let newest = all.last().unwrap().clone();
    damage(&newest);
    let out = Command::new(env!("CARGO_BIN_EXE_toy_train"))
        .arg(dir.path())
        .arg(STEPS.to_string())
        .arg("--resume")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot resume from") && stderr.contains(&newest.display().to_string()),
        "the warning names the damaged checkpoint: {stderr}"
    );
    assert_eq!(losses(dir.path()), want, "resumed from the older checkpoint, the run ends as if never stopped");
}

#[test]
fn a_truncated_newest_checkpoint_falls_back_to_the_older_one() {
    resume_past_damage(|ckpt| {
        let model = ckpt.join("model.safetensors");
        let len = std::fs::metadata(&model).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&model).unwrap().set_len(len / 2).unwrap();
    });
}

#[test]
fn an_unparsable_newest_state_falls_back_to_the_older_one() {
    resume_past_damage(|ckpt| std::fs::write(ckpt.join("state.json"), "{ not json").unwrap());
}

/// A disk that fills up while a checkpoint is written (a per-file size limit, RLIMIT_FSIZE, below
/// the checkpoint's size; the write fails with EFBIG as it would with ENOSPC): the run stops with
/// an error naming the checkpoint, the previous checkpoints stay intact, and once space is free
/// `--resume` finishes with exactly the losses of a run that never stopped.
#[test]
fn a_full_disk_during_a_checkpoint_stops_the_run_and_resume_works_once_space_is_free() {
    use std::os::unix::process::CommandExt;
    // A 2048x16 first layer: 131 KB of weights, 262 KB of optimizer state.
    let toy = |dir: &Path, resume: bool| toy(dir, &["--dim", "2048"], resume);
    let reference = tempfile::tempdir().unwrap();
    assert!(toy(reference.path(), false).status().unwrap().success());
    let want = losses(reference.path());

    // Train until two checkpoints exist, then stop the process.
    let dir = tempfile::tempdir().unwrap();
    let mut child = toy(dir.path(), false).spawn().unwrap();
    let start = Instant::now();
    while ssl_core::checkpoint::list(dir.path()).len() < 2 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let before = ssl_core::checkpoint::latest(dir.path()).expect("a checkpoint exists");
    let step_before = ssl_core::checkpoint::read_state(&before).unwrap().step;

    // Resume on a "full disk": files may not grow past 64 KiB.
    let mut full = toy(dir.path(), true);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        full.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit { rlim_cur: 64 << 10, rlim_max: 64 << 10 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = full.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a clear error, not a crash: {stderr}");
    assert!(stderr.contains("checkpoint") && stderr.contains("too large"), "the error says what failed: {stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error")).count(), 1, "one message: {stderr}");
    // Every checkpoint left is intact and the newest is no older than before.
    for c in ssl_core::checkpoint::list(dir.path()) {
        ssl_core::checkpoint::read_state(&c).unwrap_or_else(|e| panic!("{} is damaged: {e}", c.display()));
    }
    let latest = ssl_core::checkpoint::latest(dir.path()).unwrap();
    assert!(ssl_core::checkpoint::read_state(&latest).unwrap().step >= step_before);

    // Space is free again.
    let out = toy(dir.path(), true).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(losses(dir.path()), want, "the run ends as if never stopped");
    let stray: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".tmp")))
        .collect();
    assert!(stray.is_empty(), "temporary files left behind: {stray:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// LibTorch runs out of memory in the middle of a step (a real allocation failure, injected with
/// `SSL_INJECT_OOM_AT_STEP` between the forward and the backward pass): the run ends with exit 1,
/// not a panic; the message names the step and the batch size and suggests a smaller batch; the
/// state before the step is saved even though the last periodic checkpoint is older; and
/// `--resume` ends with exactly the losses of a run that never failed.
#[test]
fn out_of_memory_mid_step_saves_the_state_before_it_and_resume_is_exact() {
    let toy = |dir: &Path, resume: bool| toy(dir, &["--checkpoint-every", "50"], resume);
    let reference = tempfile::tempdir().unwrap();
    assert!(toy(reference.path(), false).status().unwrap().success());
    let want = losses(reference.path());

    let dir = tempfile::tempdir().unwrap();
    let out = toy(dir.path(), false).env("SSL_INJECT_OOM_AT_STEP", "77").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("out of memory at step 77 (--batch-size 8"), "{stderr}");
    assert!(stderr.contains("--batch-size 4 --grad-accum 2"), "the message suggests a smaller batch: {stderr}");
    let saved: Vec<u64> = ssl_core::checkpoint::list(dir.path())
        .iter()
        .map(|c| ssl_core::checkpoint::read_state(c).unwrap().step)
        .collect();
    assert_eq!(saved, vec![50, 77], "the periodic checkpoint and the state before the failed step");
    assert!(stderr.contains("the state before step 77 is saved in"), "{stderr}");

    assert!(toy(dir.path(), true).status().unwrap().success());
    assert_eq!(losses(dir.path()), want, "resumed before the failed step, the run ends as if it never failed");
}

/// The memory check (`ssl_core::trainer::memory_check`), each run a fresh process as a user's is:
/// with room to spare the toy trains and reports its estimate next to its measured peak; under a
/// budget of 85% of that estimate it is refused before any step with a halved batch that the same
/// measurement finds to fit; with 1 MiB no batch fits. (How close the estimate comes is measured
/// on the three modalities' runs, not on this toy, whose loader holds several 128 MiB batches.)
#[test]
fn a_plan_over_the_memory_budget_is_refused_with_a_batch_that_fits() {
    // A batch of 2048 rows of 16384 floats is 128 MiB: the better part of the estimate.
    let toy = |dir: &Path, budget: u64| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_toy_train"));
        c.arg(dir).arg("6").args(["--dim", "16384", "--items", "2048", "--batch-size", "2048", "--prefetch", "1"]);
        c.args(["--checkpoint-every", "0", "--max-memory", &budget.to_string()]).env("OMP_NUM_THREADS", "1");
        c.output().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = toy(dir.path(), 1 << 40);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let estimate = summary["memory_estimate_bytes"].as_u64().expect("an estimate");
    assert!(summary["peak_resident_bytes"].as_u64().is_some(), "the measured peak is reported");

    let dir = tempfile::tempdir().unwrap();
    let out = toy(dir.path(), estimate / 100 * 85);
    let msg = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("the plan will not fit in memory: at --batch-size 2048"), "{msg}");
    assert!(msg.contains("(--max-memory)"), "the budget's source is named: {msg}");
    let fits: usize =
        msg.split("--batch-size ").nth(2).and_then(|r| r.split(' ').next()?.parse().ok()).expect("a batch");
    assert!(fits < 2048 && fits.is_power_of_two(), "{msg}");
    assert!(
        msg.contains(&format!("--batch-size {fits} fits")) && msg.contains(&format!("--grad-accum {}", 2048 / fits))
    );
    assert!(ssl_core::checkpoint::list(dir.path()).is_empty(), "nothing trained");

    let out = toy(dir.path(), 1 << 20);
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && msg.contains("no batch size fits"), "{msg}");
}
