//! Trains the toy objective with a checkpoint after every step; the crash-resume test kills it.
//! Usage: toy_train RUN_DIR STEPS [--resume] [--dim N] [--checkpoint-every N] (a larger --dim
//! makes larger checkpoints)
use ssl_core::toy::{ToyObjective, ToySource};
use ssl_core::trainer::{TrainConfig, Trainer};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(steps)) = (args.get(1), args.get(2).and_then(|s| s.parse().ok())) else {
        eprintln!("usage: toy_train RUN_DIR STEPS [--resume]");
        std::process::exit(2);
    };
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse::<u64>().ok());
    let cfg = TrainConfig {
        steps,
        batch_size: 8,
        warmup_steps: 5,
        lr: 1e-2,
        log_every: 1,
        checkpoint_every: flag("--checkpoint-every").unwrap_or(1),
        keep_checkpoints: 2,
        progress: false,
        ..Default::default()
    };
    let dim = flag("--dim").unwrap_or(4) as i64;
    let mut obj = ToyObjective::new(tch::Device::Cpu, dim, 3);
    let resume = args.iter().any(|a| a == "--resume");
    if let Err(e) =
        Trainer::new(cfg, dir, tch::Device::Cpu).fit(&mut obj, Arc::new(ToySource::new(64, dim as usize)), resume)
    {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
