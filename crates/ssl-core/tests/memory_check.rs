//! The memory check before the first step (`ssl_core::trainer::memory_check`): a plan whose
//! measured estimate exceeds the budget is refused with the largest halved batch that fits, and
//! one that fits trains, with its estimate in the summary. A test binary of its own, so that no
//! other test moves this process's resident memory while the budget is set from it.
use ssl_core::toy::{ToyObjective, ToySource};
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::CoreError;
use std::sync::Arc;
use tch::Device;

const DIM: i64 = 4096;

fn resident() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 =
        s.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn config(batch_size: usize, max_memory: u64) -> TrainConfig {
    TrainConfig {
        steps: 2,
        batch_size,
        warmup_steps: 1,
        log_every: 1,
        progress: false,
        memory_check: true,
        max_memory: Some(max_memory),
        ..Default::default()
    }
}

#[test]
fn a_plan_over_the_budget_is_refused_with_a_batch_that_fits() {
    tch::set_num_threads(1);
    let source = Arc::new(ToySource::new(2048, DIM as usize));
    // A batch of 2048 rows of 4096 floats is 32 MiB; the loader keeps five of them, and a step
    // adds about as much again: about 200 MiB at 2048, half at 1024.
    let budget = resident() + (170 << 20);
    let dir = tempfile::tempdir().unwrap();
    let mut obj = ToyObjective::new(Device::Cpu, DIM, 0);
    let err =
        Trainer::new(config(2048, budget), dir.path(), Device::Cpu).fit(&mut obj, source.clone(), false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CoreError::WontFit { batch_size: 2048, .. }), "{msg}");
    assert!(msg.contains("--batch-size 1024 fits") && msg.contains("--grad-accum 2"), "{msg}");
    assert!(msg.contains("--max-memory"), "the budget's source is named: {msg}");
    assert!(ssl_core::checkpoint::list(dir.path()).is_empty(), "nothing trained");

    // With nothing to spare, no batch fits.
    let err =
        Trainer::new(config(2048, 1 << 20), dir.path(), Device::Cpu).fit(&mut obj, source.clone(), false).unwrap_err();
    assert!(err.to_string().contains("no batch size fits"), "{err}");

    // The suggested batch trains, and its estimate is within a quarter of the measured peak.
    let s = Trainer::new(config(1024, budget), dir.path(), Device::Cpu).fit(&mut obj, source, false).unwrap();
    let estimate = s.report.memory_estimate_bytes.expect("an estimate") as f64;
    assert!(estimate <= budget as f64, "{estimate} over the budget {budget}");
    let peak = s.report.peak_resident_bytes.expect("a peak") as f64;
    assert!((estimate / peak - 1.0).abs() < 0.25, "estimate {estimate} against the peak {peak}");
}
