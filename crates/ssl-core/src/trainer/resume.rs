//! Where a run starts: with `--resume`, the newest checkpoint of the run directory that loads;
//! otherwise (or with no checkpoint yet) `--init-from`'s weights when given, else the
//! objective's fresh initialisation.
use super::Trainer;
use crate::checkpoint::{self, CheckpointState};
use crate::dist::World;
use crate::error::{CoreError, Result};
use crate::loader::LoaderPosition;
use crate::optim::Optimizer;
use std::path::Path;
use tch::nn::VarStore;

/// The state a run starts from.
pub struct Restored {
    pub state: CheckpointState,
    /// The step of the checkpoint it resumed from, if any.
    pub resumed_from: Option<u64>,
}

/// What a checkpoint stores of the configuration and checks on resume: the trainer's settings
/// less those that may change between a run and its resumption, the model's, and the number
/// of processes of a data-parallel run.
pub(crate) fn stored_config(trainer: &Trainer, world: &World) -> serde_json::Value {
    let mut c = serde_json::to_value(&trainer.config).unwrap_or_default();
    if let Some(obj) = c.as_object_mut() {
        for k in [
            "steps",
            "warmup_steps",
            "log_every",
            "checkpoint_every",
            "keep_checkpoints",
            "progress",
            "prefetch",
            "max_failed_inputs_in_row",
            "memory_check",
            "max_memory",
            // Its effect is in `lr`, which is compared; checkpoints written before the field
            // existed resume.
            "continued_lr",
        ] {
            obj.remove(k);
        }
    }
    let mut stored = serde_json::json!({ "trainer": c, "model": trainer.model_config });
    // The loader position and the global batch depend on the number of processes; a
    // one-process run stores nothing, so its checkpoints stay what they were.
    if world.is_distributed() {
        stored["world_size"] = serde_json::json!(world.size);
    }
    stored
}

/// Restore `vs` and `optimizer` as the trainer says (resume, else its initial weights) and
/// return the state the loop continues from.
pub fn restore(trainer: &Trainer, world: &World, vs: &VarStore, optimizer: &mut Optimizer) -> Result<Restored> {
    let config = stored_config(trainer, world);
    let fresh = CheckpointState {
        step: 0,
        optimizer_steps: 0,
        loader: LoaderPosition { seed: trainer.config.seed, ..Default::default() },
        nonfinite_steps: 0,
        nonfinite_in_row: 0,
        skipped_inputs: 0,
        elapsed_secs: 0.0,
        config: config.clone(),
    };
    if trainer.resume {
        if let Some(state) = newest(&trainer.run_dir, world, &config, vs, optimizer)? {
            return Ok(Restored { resumed_from: Some(state.step), state });
        }
    }
    if let Some(init) = &trainer.init {
        let fresh = init.load_into(vs)?;
        if world.is_main() {
            let fresh = match fresh.len() {
                0 => String::new(),
                n => format!(", {n} fresh: {}", fresh.join(", ")),
            };
            eprintln!(
                "==> initialised from {} ({}: {} tensors{fresh})",
                init.source.display(),
                init.kind,
                init.tensors.len()
            );
        }
    }
    Ok(Restored { state: fresh, resumed_from: None })
}

/// The newest checkpoint that loads, loaded. A damaged one (a truncated file, a state.json that
/// does not parse) is named in a warning and the next older one is tried; a checkpoint of
/// another configuration is an error, not something to skip. `None` when there is none.
fn newest(
    run_dir: &Path,
    world: &World,
    config: &serde_json::Value,
    vs: &VarStore,
    optimizer: &mut Optimizer,
) -> Result<Option<CheckpointState>> {
    let mut damaged = Vec::new();
    for ckpt in checkpoint::list(run_dir).into_iter().rev() {
        if let Ok(saved) = checkpoint::read_state(&ckpt) {
            same_run(&ckpt, &saved.config, config, world)?;
        }
        match checkpoint::load(&ckpt, vs, optimizer) {
            Ok(state) => return Ok(Some(state)),
            Err(e) => {
                eprintln!("warning: cannot resume from {}: {e}; trying an older checkpoint", ckpt.display());
                damaged.push(format!("{}: {e}", ckpt.display()));
            }
        }
    }
    if damaged.is_empty() {
        return Ok(None);
    }
    Err(CoreError::CheckpointMismatch(format!(
        "no checkpoint of {} can be resumed:\n  {}",
        run_dir.display(),
        damaged.join("\n  ")
    )))
}

/// A checkpoint written by this run's configuration and number of processes, or an error
/// naming what differs.
fn same_run(ckpt: &Path, saved: &serde_json::Value, now: &serde_json::Value, world: &World) -> Result<()> {
    let processes = |c: &serde_json::Value| c.get("world_size").and_then(|v| v.as_u64()).unwrap_or(1);
    if processes(saved) != world.size as u64 {
        return Err(CoreError::CheckpointMismatch(format!(
            "{} was written by a run of {} process(es), and this one has {}: resume with the same number of \
             processes (--nproc-per-node), because the global batch and the loader position depend on it",
            ckpt.display(),
            processes(saved),
            world.size
        )));
    }
    if saved != now {
        return Err(CoreError::CheckpointMismatch(format!(
            "{} was written with another configuration:\n  saved: {saved}\n  now:   {now}",
            ckpt.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_configuration_leaves_out_what_may_change_and_continued_lr() {
        let cfg = crate::trainer::TrainConfig { continued_lr: Some(1e-4), steps: 7, ..Default::default() };
        let trainer = Trainer::new(cfg, "unused", tch::Device::Cpu);
        let stored = stored_config(&trainer, &World::default());
        let t = &stored["trainer"];
        assert!(t.get("lr").is_some() && t.get("batch_size").is_some(), "{stored}");
        assert!(t.get("continued_lr").is_none() && t.get("steps").is_none(), "{stored}");
    }
}
