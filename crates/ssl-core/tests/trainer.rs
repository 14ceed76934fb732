//! The trainer on the toy objective: determinism, exact resume, the NaN guard, checkpoints.
use ssl_core::checkpoint;
use ssl_core::toy::{ToyObjective, ToySource};
use ssl_core::trainer::{read_metrics, TrainConfig, Trainer};
use ssl_core::CoreError;
use std::sync::Arc;
use tch::Device;

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 8,
        warmup_steps: 3,
        lr: 1e-2,
        log_every: 1,
        checkpoint_every: 5,
        keep_checkpoints: 10,
        progress: false,
        ..Default::default()
    }
}

fn train(dir: &std::path::Path, cfg: TrainConfig, resume: bool) -> ssl_core::Result<ssl_core::trainer::TrainSummary> {
    let mut obj = ToyObjective::new(Device::Cpu, 4, 3);
    Trainer::new(cfg, dir, Device::Cpu).resuming(resume).fit(&mut obj, Arc::new(ToySource::new(50, 4)))
}

#[test]
fn same_seed_gives_the_same_losses_and_training_reduces_the_loss() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let la = train(a.path(), config(25), false).unwrap().losses;
    let lb = train(b.path(), config(25), false).unwrap().losses;
    assert_eq!(la, lb);
    assert!(la.last().unwrap().1 < la[0].1);
    let mut other = config(25);
    other.seed = 1;
    assert_ne!(train(b.path(), other, false).unwrap().losses, la);
}

#[test]
fn resume_from_a_middle_checkpoint_reproduces_the_uninterrupted_losses() {
    let dir = tempfile::tempdir().unwrap();
    let full = train(dir.path(), config(30), false).unwrap();
    // Pretend the run died after step 10: drop the later checkpoints.
    for ckpt in checkpoint::list(dir.path()) {
        if checkpoint::read_state(&ckpt).unwrap().step > 10 {
            std::fs::remove_dir_all(ckpt).unwrap();
        }
    }
    let resumed = train(dir.path(), config(30), true).unwrap();
    assert_eq!(resumed.report.resumed_from, Some(10));
    assert_eq!(resumed.losses, full.losses[10..].to_vec());
    // metrics.jsonl holds each step exactly once, in order.
    let steps: Vec<u64> = read_metrics(dir.path()).iter().map(|m| m.step).collect();
    assert_eq!(steps, (1..=30).collect::<Vec<_>>());
}

#[test]
fn a_half_written_checkpoint_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), config(10), false).unwrap();
    let tmp = checkpoint::checkpoints_dir(dir.path()).join("step-000000099.tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("model.safetensors"), b"garbage").unwrap();
    let latest = checkpoint::latest(dir.path()).unwrap();
    assert_eq!(checkpoint::read_state(&latest).unwrap().step, 10);
}

#[test]
fn only_the_last_k_checkpoints_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(20);
    cfg.checkpoint_every = 2;
    cfg.keep_checkpoints = 3;
    train(dir.path(), cfg, false).unwrap();
    let steps: Vec<u64> =
        checkpoint::list(dir.path()).iter().map(|c| checkpoint::read_state(c).unwrap().step).collect();
    assert_eq!(steps, vec![16, 18, 20]);
}

#[test]
fn non_finite_steps_are_skipped_then_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut obj = ToyObjective::new(Device::Cpu, 4, 3);
    obj.nan_at = vec![4];
    let s = Trainer::new(config(10), dir.path(), Device::Cpu).fit(&mut obj, Arc::new(ToySource::new(50, 4))).unwrap();
    assert_eq!(s.report.nonfinite_steps, 1);
    assert!(s.report.final_loss.is_finite());

    let mut obj = ToyObjective::new(Device::Cpu, 4, 3);
    obj.nan_at = vec![2, 3, 4, 5, 6];
    let mut cfg = config(10);
    cfg.max_nonfinite_in_row = 3;
    let err = Trainer::new(cfg, dir.path(), Device::Cpu).fit(&mut obj, Arc::new(ToySource::new(50, 4))).unwrap_err();
    assert!(matches!(err, CoreError::Diverged { count: 3, step: 4 }), "{err}");
}

#[test]
fn loading_into_a_different_model_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), config(5), false).unwrap();
    let other = ToyObjective::new(Device::Cpu, 6, 0);
    let err = checkpoint::load_weights(dir.path(), ssl_core::trainer::Objective::var_store(&other)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("fc1.weight") && msg.contains("[16, 4]"), "{msg}");
}

#[test]
fn resuming_with_another_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), config(5), false).unwrap();
    let mut cfg = config(10);
    cfg.batch_size = 4;
    let err = train(dir.path(), cfg, true).unwrap_err();
    assert!(matches!(err, CoreError::CheckpointMismatch(_)), "{err}");
}

#[test]
fn metrics_lines_carry_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), config(3), false).unwrap();
    let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for key in ["step", "loss", "lr", "grad_norm", "samples_per_s", "wall_time", "rmse"] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
}
