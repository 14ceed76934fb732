//! Trains the toy objective with a checkpoint after every step; the crash-resume test kills it,
//! the memory-check test gives it a budget.
//! Usage: toy_train RUN_DIR STEPS [--resume] [--dim N] [--checkpoint-every N] [--batch-size N]
//! [--items N] [--prefetch N] [--max-memory BYTES] (a larger --dim makes larger checkpoints and
//! batches; --max-memory turns the memory check on). Prints the summary as JSON on success.
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
    let max_memory = flag("--max-memory");
    let cfg = TrainConfig {
        steps,
        batch_size: flag("--batch-size").unwrap_or(8) as usize,
        warmup_steps: 5.min(steps),
        lr: 1e-2,
        log_every: 1,
        checkpoint_every: flag("--checkpoint-every").unwrap_or(1),
        keep_checkpoints: 2,
        progress: false,
        prefetch: flag("--prefetch").unwrap_or(4) as usize,
        memory_check: max_memory.is_some(),
        max_memory,
        ..Default::default()
    };
    let dim = flag("--dim").unwrap_or(4) as i64;
    let items = flag("--items").unwrap_or(64) as usize;
    let mut obj = ToyObjective::new(tch::Device::Cpu, dim, 3);
    let resume = args.iter().any(|a| a == "--resume");
    match Trainer::new(cfg, dir, tch::Device::Cpu)
        .resuming(resume)
        .fit(&mut obj, Arc::new(ToySource::new(items, dim as usize)))
    {
        Ok(s) => println!("{}", serde_json::to_string(&s.report).unwrap_or_default()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
