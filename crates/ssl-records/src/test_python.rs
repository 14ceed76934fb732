//! The test Python: how every test that checks our files against a Python library (transformers,
//! timm, TensorBoard, torch.distributed) finds it and runs a check script.
//!
//! `cargo xtask test` installs the pinned packages and names the interpreter in `SSL_PYTHON`.
//! Without it such a test fails with that explanation: it is never skipped silently.
//!
//! ```no_run
//! let stdout = ssl_records::test_python::check("print('max_abs_diff=0')", &["export"], "transformers");
//! assert!(stdout.contains("max_abs_diff="));
//! ```
use std::ffi::OsStr;
use std::process::Command;

/// The interpreter named by `SSL_PYTHON`; panics, saying what the test needs, when it is unset.
/// `needs` names the packages the test uses, for the message.
pub fn python(needs: &str) -> String {
    std::env::var("SSL_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SSL_PYTHON is not set: this test needs a Python with {needs} \
             (`cargo xtask test` sets SSL_PYTHON and installs them); it is not skipped"
        )
    })
}

/// Run `script` (`python -c script args...`) and return its standard output. Panics with both
/// output streams when the script fails.
pub fn run<S: AsRef<OsStr>>(script: &str, args: &[S], needs: &str) -> String {
    let python = python(needs);
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run SSL_PYTHON={python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python check failed ({needs}):\n{stdout}\n{stderr}");
    stdout
}

/// [`run`] for a parity check: the script prints `max_abs_diff=...` and exits non-zero when the
/// difference is over its tolerance. Returns (and prints) its standard output.
pub fn check<S: AsRef<OsStr>>(script: &str, args: &[S], needs: &str) -> String {
    let stdout = run(script, args, needs);
    assert!(stdout.contains("max_abs_diff="), "the check printed no max_abs_diff=:\n{stdout}");
    println!("{stdout}");
    stdout
}

/// TensorBoard's own reader (`EventAccumulator`) over the event files in `dir`: every scalar
/// tag, as `{tag: [[step, value, wall_time], ...]}`.
pub fn tensorboard_scalars(dir: &std::path::Path) -> serde_json::Value {
    const READ: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({t: [[e.step, e.value, e.wall_time] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
"#;
    let stdout = run(READ, &[dir], "tensorboard");
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON:\n{stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}
