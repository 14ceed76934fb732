//! SIGTERM during pretraining saves a checkpoint and exits with a message that says how to resume;
//! a second run on the same --out meanwhile is refused; --resume then finishes the run.
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ssl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ssl"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).env("OMP_NUM_THREADS", "1");
    c
}

const ARGS: [&str; 16] = [
    "pretrain-vision",
    "--steps",
    "3000",
    "--batch-size",
    "8",
    "--width",
    "4",
    "--max-images",
    "64",
    "--max-test",
    "40",
    "--labels-per-class",
    "2",
    "--seeds",
    "1",
    "--checkpoint-every=0",
];

fn metrics_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map(|s| s.lines().count()).unwrap_or(0)
}

#[test]
fn sigterm_saves_a_checkpoint_a_second_run_is_refused_and_resume_finishes() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let mut child = ssl().args(ARGS).arg("--out").arg(&run).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while metrics_lines(&run) < 1 && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(metrics_lines(&run) >= 1, "training started");

    let second = ssl().args(ARGS).arg("--out").arg(&run).arg("--resume").output().unwrap();
    let msg = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{msg}");
    assert!(msg.contains("in use by another run"), "{msg}");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(stopped.elapsed() < Duration::from_secs(30), "the run did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted at step") && stderr.contains("--resume"), "{stderr}");
    let ckpt = ssl_core::checkpoint::latest(&run).expect("a checkpoint was saved at the interruption");
    let step = ssl_core::checkpoint::read_state(&ckpt).unwrap().step;
    assert!(step > 0 && step < 3000, "interrupted mid-run, at step {step}");
    let leftovers: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with("step-"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left: {leftovers:?}");

    // Finish with fewer steps than planned, so the test stays short: the checkpoint resumes.
    let fin = (step + 20).to_string();
    let mut args = ARGS.to_vec();
    args[2] = &fin;
    let o = ssl().args(&args).arg("--out").arg(&run).arg("--resume").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["pretraining"]["resumed_from"], step);
    assert_eq!(report["pretraining"]["steps"], step + 20);
}
