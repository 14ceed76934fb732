//! The run options resolved once into a validated plan (the "high-level" arguments).
//!
//! Every flag and path is checked here, before any data is read or any step runs, and every
//! derived value has its one rule here:
//!
//! | value | rule |
//! |---|---|
//! | batch size | `--batch-size`, else the method's default; a pretraining set smaller than one batch lowers the default to its size (a note says so) and refuses a `--batch-size` larger than it |
//! | steps | `--steps`; else `--epochs` × pretraining items / batch size, rounded up; else the method's default |
//! | learning rate | `--lr`; else, with `--init-from`, the method's rate for continued pretraining ([`TrainConfig::continued_lr`]) when it has one; else the method's default |
//! | threads | `--threads`; else, for the workers `--nproc-per-node N` starts, the cores divided by N (given to each worker as `--threads`, so its `config.json` records it) |
//! | fine-tuning steps | `--finetune-max-steps` caps the protocol's fine-tuning steps (after `--full-protocol`) |
//! | warm-up | `--warmup`; else the method's default warm-up scaled with the steps (its ratio to the default steps is kept) |
//! | seed | `--seed` (default 0) seeds the trainer and the evaluation protocol alike |
//! | run directory | `--out`; else `runs/<modality>-<method>-<unix time>`; with `--eval-only`, `--out` or `<evaluated run>/eval` |
//! | evaluated run | `--checkpoint` is a run directory, or a checkpoint inside `<run>/checkpoints/` |
//! | initial weights | `--init-from DIR`: one of our runs (or checkpoints) or another tool's directory with a `config.json` (not with `--eval-only`) |
//! | export | `--export DIR` (a new or empty folder; not with `--eval-only`) in `--export-format`, else the encoder's natural format |
use super::options::RunOptions;
use crate::dist::{Backend, World};
use crate::error::{CoreError, Result};
use crate::eval::{EvalKind, ProtocolConfig};
use crate::interop::ExportFormat;
use crate::trainer::TrainConfig;
use serde::de::DeserializeOwned;
use ssl_records::run::RunRecord;
use std::path::PathBuf;
use std::time::Duration;
use tch::Device;

/// What the run does.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Pretrain (continuing from the newest checkpoint with `resume`), then evaluate.
    Pretrain { resume: bool },
    /// Evaluate the encoder of an existing run.
    EvalOnly {
        /// The evaluated run's directory (its `config.json` describes the model).
        run: PathBuf,
        /// The run directory or the checkpoint whose weights are evaluated.
        weights: PathBuf,
        /// The evaluated run's `config.json`, read and checked to be of this modality.
        record: Box<RunRecord>,
    },
}

/// The validated, fully derived run options.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub modality: String,
    pub method: String,
    pub run_dir: PathBuf,
    pub device: Device,
    pub threads: Option<i32>,
    pub mode: Mode,
    pub seed: u64,
    /// This process's place in a data-parallel run (one process unless a launcher set it).
    pub world: World,
    /// `--nproc-per-node N` outside a launcher: this process starts N workers and waits.
    pub launch: Option<usize>,
    pub dist_backend: Backend,
    pub dist_timeout: Duration,
    /// `--dist-bucket-mb`, `--no-dist-overlap`.
    pub dist_buckets: crate::dist::BucketConfig,
    /// `--export`: where the encoder goes after pretraining, and in which format (`None`: the
    /// encoder's natural one).
    pub export: Option<Export>,
    /// `--init-from`: the weights pretraining starts from (the recipe loads them).
    pub init_from: Option<crate::init::InitSource>,
    options: RunOptions,
}

/// The export a run ends with (`--export DIR [--export-format F]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub dir: PathBuf,
    pub format: Option<ExportFormat>,
}

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument(msg.into())
}

impl RunOptions {
    /// Check every option and derive the plan. Nothing is read but the file system's metadata
    /// (and CUDA's availability for `--device cuda`).
    pub fn resolve(&self, modality: &str, method: &str) -> Result<RunPlan> {
        self.resolve_in(modality, method, World::from_env()?)
    }

    /// [`RunOptions::resolve`] for a process at `world` (as its launcher's variables say).
    pub fn resolve_in(&self, modality: &str, method: &str, world: World) -> Result<RunPlan> {
        self.check_values()?;
        let launch = match self.nproc_per_node {
            Some(0) => return Err(invalid("--nproc-per-node must be at least 1")),
            // Inside torchrun or srun the launcher already started the processes.
            Some(n) if n > 1 && !world.is_distributed() => Some(n),
            _ => None,
        };
        let distributed = world.is_distributed() || launch.is_some();
        let dist_timeout = match self.dist_timeout {
            Some(t) if !(t.is_finite() && t > 0.0) => {
                return Err(invalid(format!("--dist-timeout must be a positive number of seconds, got {t}")))
            }
            Some(t) => Duration::from_secs_f64(t),
            None => Duration::from_secs_f64(crate::dist::DEFAULT_TIMEOUT_SECS),
        };
        let dist_buckets = crate::dist::BucketConfig::from_flags(self.dist_bucket_mb, self.no_dist_overlap)?;
        if self.init_from.is_some() && self.eval_only {
            return Err(invalid("--init-from starts a pretraining run; --eval-only evaluates an existing one"));
        }
        if distributed && self.eval_only {
            return Err(invalid("--eval-only runs in one process: drop --nproc-per-node (and torchrun/srun)"));
        }
        if world.is_distributed() && self.out.is_none() {
            return Err(invalid(format!(
                "a run of {} processes needs --out RUN_DIR: every rank must use the same run directory",
                world.size
            )));
        }
        let device = world.device(self.device.as_deref().unwrap_or("cpu"))?;
        let dist_backend = Backend::for_device(self.dist_backend, device);
        if distributed {
            dist_backend.check_available(device)?;
        }
        let mode = self.mode(modality)?;
        let run_dir = self.run_dir(&mode, modality, method)?;
        let export = self.export(&mode)?;
        let init_from = self.init_from.as_deref().map(|p| crate::init::InitSource::of(p, modality)).transpose()?;
        if run_dir.exists() && !run_dir.is_dir() {
            return Err(invalid(format!("--out {}: exists and is not a directory", run_dir.display())));
        }
        if mode == (Mode::Pretrain { resume: false }) && crate::checkpoint::latest(&run_dir).is_some() {
            return Err(invalid(format!(
                "{} already holds a run with checkpoints: add --resume to continue it, or choose another --out",
                run_dir.display()
            )));
        }
        // The workers of --nproc-per-node share the cores unless --threads says otherwise.
        let threads = match (self.threads, launch) {
            (None, Some(n)) => {
                let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
                Some((cores / n).max(1) as i32)
            }
            (t, _) => t,
        };
        Ok(RunPlan {
            modality: modality.into(),
            method: method.into(),
            run_dir,
            device,
            threads,
            mode,
            seed: self.seed.unwrap_or(0),
            world,
            launch,
            dist_backend,
            dist_timeout,
            dist_buckets,
            export,
            init_from,
            options: self.clone(),
        })
    }

    /// Each numeric flag within its range, on its own.
    fn check_values(&self) -> Result<()> {
        if self.steps == Some(0) && self.init_from.is_none() {
            return Err(invalid(
                "--steps 0 would train nothing; to evaluate an existing run use --eval-only --checkpoint RUN_DIR \
                 (with --init-from, --steps 0 evaluates the weights it names as they are)",
            ));
        }
        if let Some(e) = self.epochs {
            if !(e.is_finite() && e > 0.0) {
                return Err(invalid(format!("--epochs must be positive, got {e}")));
            }
        }
        if self.log_every == Some(0) {
            return Err(invalid("--log-every must be at least 1"));
        }
        if self.batch_size == Some(0) {
            return Err(invalid("--batch-size must be at least 1"));
        }
        if let Some(lr) = self.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(invalid(format!("--lr must be a positive number, got {lr}")));
            }
        }
        if let (Some(w), Some(s)) = (self.warmup, self.steps) {
            if w > s {
                return Err(invalid(format!("--warmup {w} is longer than --steps {s}")));
            }
        }
        crate::device::check_threads(self.threads)?;
        if let Some(k) = &self.labels_per_class {
            if k.is_empty() || k.contains(&0) {
                return Err(invalid("--labels-per-class needs one or more positive counts, e.g. 1,5,10,50"));
            }
        }
        if self.seeds == Some(0) {
            return Err(invalid("--seeds must be at least 1"));
        }
        if self.headline_seeds == Some(0) {
            return Err(invalid("--headline-seeds must be at least 1"));
        }
        if self.eval.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid("--eval needs at least one of linear, knn, finetune"));
        }
        Ok(())
    }

    /// Pretraining (resumed or not), or the evaluation of an existing run.
    fn mode(&self, modality: &str) -> Result<Mode> {
        match (self.eval_only, &self.checkpoint, self.resume) {
            (true, _, true) => Err(invalid("--resume and --eval-only exclude each other")),
            (true, None, _) => Err(invalid("--eval-only needs --checkpoint RUN_DIR (the run to evaluate)")),
            (false, Some(_), _) => Err(invalid(
                "--checkpoint is the run that --eval-only evaluates; to continue a run use --out RUN_DIR --resume",
            )),
            (true, Some(c), false) => {
                if !c.exists() {
                    return Err(invalid(format!("--checkpoint {}: no such file or directory", c.display())));
                }
                let run = crate::checkpoint::run_of(c)?;
                let record = RunRecord::read_for(&run, modality).map_err(|e| invalid(e.to_string()))?;
                Ok(Mode::EvalOnly { run, weights: c.clone(), record: Box::new(record) })
            }
            (false, None, resume) => Ok(Mode::Pretrain { resume }),
        }
    }

    /// `--out`, else the evaluated run's `eval/`, else `runs/<modality>-<method>-<unix time>`.
    fn run_dir(&self, mode: &Mode, modality: &str, method: &str) -> Result<PathBuf> {
        Ok(match (mode, &self.out) {
            (_, Some(out)) => out.clone(),
            (Mode::EvalOnly { run, .. }, None) => run.join("eval"),
            (Mode::Pretrain { resume: true }, None) => {
                return Err(invalid("--resume needs --out RUN_DIR (the run to continue)"))
            }
            (Mode::Pretrain { .. }, None) => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                PathBuf::from("runs").join(format!("{modality}-{method}-{t}"))
            }
        })
    }

    /// `--export DIR` after pretraining: a new or empty folder.
    fn export(&self, mode: &Mode) -> Result<Option<Export>> {
        match (&self.export, mode) {
            (None, _) if self.export_format.is_some() => {
                Err(invalid("--export-format needs --export DIR (the folder to export into)"))
            }
            (None, _) => Ok(None),
            (Some(_), Mode::EvalOnly { .. }) => Err(invalid(
                "--export exports a run after pretraining; to export an existing run use `ssl export RUN_DIR --to DIR`",
            )),
            (Some(dir), _) => {
                if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
                    return Err(invalid(format!("--export {}: not an empty folder", dir.display())));
                }
                Ok(Some(Export { dir: dir.clone(), format: self.export_format }))
            }
        }
    }
}

impl RunPlan {
    /// The options as given (before derivation).
    pub fn options(&self) -> &RunOptions {
        &self.options
    }

    pub fn is_eval_only(&self) -> bool {
        matches!(self.mode, Mode::EvalOnly { .. })
    }

    /// With `--eval-only`: the evaluated run's resolved configuration at `pointer` (a JSON
    /// pointer below `config.resolved`, `""` for all of it), as the recipe's type. `None` for a
    /// pretraining run.
    pub fn evaluated<T: DeserializeOwned>(&self, pointer: &str) -> Option<Result<T>> {
        let Mode::EvalOnly { run, record, .. } = &self.mode else { return None };
        let value = record.config.pointer(&format!("/resolved{pointer}")).cloned().unwrap_or_default();
        Some(serde_json::from_value(value).map_err(|e| {
            invalid(format!("{}: no {} configuration at `resolved{pointer}`: {e}", run.display(), self.modality))
        }))
    }

    /// With `--eval-only`: the flags the evaluated run was given.
    pub fn evaluated_flags(&self) -> Option<&serde_json::Value> {
        match &self.mode {
            Mode::EvalOnly { record, .. } => record.config.get("flags"),
            Mode::Pretrain { .. } => None,
        }
    }

    pub fn resume(&self) -> bool {
        matches!(self.mode, Mode::Pretrain { resume: true })
    }

    /// Whether data prepared in the run directory (a tokenizer, a packed corpus) is read as it
    /// is rather than made again: when resuming, and on every rank but 0 of a data-parallel run
    /// (rank 0 prepares it while the others wait).
    pub fn reuses_prepared_data(&self) -> bool {
        self.resume() || !self.world.is_main()
    }

    /// Set LibTorch's intra-op threads (`--threads`).
    pub(crate) fn apply_threads(&self) {
        // Checked when the plan was resolved.
        if let Some(t) = self.threads {
            tch::set_num_threads(t);
        }
    }

    /// Apply the options to a method's trainer defaults, for `items` pretraining examples (the
    /// rules of this module's table).
    pub fn apply_train(&self, train: &mut TrainConfig, items: usize) -> Result<()> {
        let o = &self.options;
        let (default_steps, default_warmup) = (train.steps.max(1), train.warmup_steps);
        if let Some(b) = o.batch_size {
            train.batch_size = b;
        }
        // One global batch: the per-process batch times the processes.
        let ranks = self.world.size.max(1);
        if items < train.batch_size * ranks {
            let what = match ranks {
                1 => String::new(),
                n => format!(" x {n} processes"),
            };
            if o.batch_size.is_some() {
                return Err(invalid(format!(
                    "--batch-size {}{what} is larger than the {items} pretraining examples: give more data or a smaller --batch-size",
                    train.batch_size
                )));
            }
            if items < ranks {
                return Err(invalid(format!("{items} pretraining examples cannot fill one batch{what}")));
            }
            eprintln!("note: only {items} pretraining examples; batch size lowered to {}{what}", items / ranks);
            train.batch_size = items / ranks;
        }
        if let Some(n) = o.log_every {
            train.log_every = n;
        }
        if let Some(e) = o.epochs {
            train.steps = ((e * items as f64) / train.batch_size.max(1) as f64).ceil().max(1.0) as u64;
        }
        if let Some(s) = o.steps {
            train.steps = s;
        }
        train.warmup_steps = o
            .warmup
            .unwrap_or_else(|| ((default_warmup as f64) * train.steps as f64 / default_steps as f64).round() as u64);
        train.lr = match (o.lr, &self.init_from, train.continued_lr) {
            (Some(lr), _, _) => lr,
            (None, Some(_), Some(lr)) => lr,
            _ => train.lr,
        };
        if let Some(n) = o.checkpoint_every {
            train.checkpoint_every = n;
        }
        if let Some(n) = o.profile {
            train.profile = n;
        }
        train.memory_check = !o.no_memory_check;
        train.max_memory = o.max_memory;
        train.seed = self.seed;
        Ok(())
    }

    /// Apply the options to a method's protocol defaults.
    pub fn apply_protocol(&self, protocol: &mut ProtocolConfig) {
        let o = &self.options;
        if let Some(k) = &o.labels_per_class {
            protocol.labels_per_class = k.clone();
        }
        if let Some(s) = o.seeds {
            protocol.seeds = s;
            protocol.headline_seeds = s;
        }
        if let Some(s) = o.headline_seeds {
            protocol.headline_seeds = s;
        }
        if o.full_protocol {
            *protocol = protocol.clone().full();
        }
        if let Some(e) = &o.eval {
            protocol.evals = e.clone();
        }
        if let Some(s) = o.finetune_max_steps {
            protocol.finetune.max_steps = s;
            protocol.finetune.min_steps = protocol.finetune.min_steps.min(s);
        }
        protocol.seed = self.seed;
    }

    /// The evaluations the protocol will run (for messages).
    pub fn evals(protocol: &ProtocolConfig) -> String {
        protocol.evals.iter().map(|e: &EvalKind| e.name()).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RunOptions {
        RunOptions { out: Some(tempfile::tempdir().unwrap().keep()), ..Default::default() }
    }

    #[test]
    fn bad_options_are_refused_before_any_work() {
        let full = tempfile::tempdir().unwrap().keep();
        std::fs::write(full.join("model.safetensors"), "").unwrap();
        let cases: Vec<(RunOptions, &str)> = vec![
            (RunOptions { steps: Some(0), ..opts() }, "--steps 0"),
            (RunOptions { batch_size: Some(0), ..opts() }, "--batch-size"),
            (RunOptions { labels_per_class: Some(vec![0]), ..opts() }, "--labels-per-class"),
            (RunOptions { labels_per_class: Some(vec![]), ..opts() }, "--labels-per-class"),
            (RunOptions { seeds: Some(0), ..opts() }, "--seeds"),
            (RunOptions { headline_seeds: Some(0), ..opts() }, "--headline-seeds"),
            (RunOptions { lr: Some(f64::NAN), ..opts() }, "--lr"),
            (RunOptions { lr: Some(-1.0), ..opts() }, "--lr"),
            (RunOptions { epochs: Some(0.0), ..opts() }, "--epochs"),
            (RunOptions { threads: Some(0), ..opts() }, "--threads"),
            (RunOptions { warmup: Some(10), steps: Some(5), ..opts() }, "--warmup"),
            (RunOptions { eval: Some(vec![]), ..opts() }, "--eval"),
            (RunOptions { eval_only: true, ..opts() }, "--checkpoint"),
            (RunOptions { checkpoint: Some("x".into()), ..opts() }, "--eval-only"),
            (RunOptions { resume: true, out: None, ..opts() }, "--resume needs --out"),
            (RunOptions { device: Some("tpu".into()), ..opts() }, "unknown device"),
            (RunOptions { eval_only: true, checkpoint: Some("/nonexistent/run".into()), ..opts() }, "no such file"),
            (RunOptions { export_format: Some(ExportFormat::Hf), ..opts() }, "--export-format needs --export"),
            (RunOptions { export: Some(full.clone()), ..opts() }, "not an empty folder"),
            (RunOptions { init_from: Some("/nonexistent/model".into()), ..opts() }, "no such directory"),
            (RunOptions { init_from: Some(full.clone()), ..opts() }, "neither one of our run directories"),
            (
                RunOptions { init_from: Some(full), eval_only: true, checkpoint: Some(".".into()), ..opts() },
                "--init-from starts a pretraining run",
            ),
        ];
        for (o, needle) in cases {
            let e = o.resolve("vision", "rotation").unwrap_err().to_string();
            assert!(e.contains(needle), "{o:?}: `{e}` should mention {needle}");
        }
    }

    #[test]
    fn derived_values_follow_one_rule() {
        let base = TrainConfig { steps: 300, warmup_steps: 50, batch_size: 64, ..Default::default() };
        let plan = |o: RunOptions| o.resolve("vision", "rotation").unwrap();
        let derive = |o: RunOptions, items| {
            let mut t = base.clone();
            plan(o).apply_train(&mut t, items).unwrap();
            (t.steps, t.warmup_steps, t.batch_size)
        };
        assert_eq!(derive(opts(), 1000), (300, 50, 64), "defaults stay");
        assert_eq!(derive(RunOptions { steps: Some(600), ..opts() }, 1000), (600, 100, 64), "warm-up keeps its ratio");
        assert_eq!(derive(RunOptions { steps: Some(600), warmup: Some(7), ..opts() }, 1000), (600, 7, 64));
        assert_eq!(
            derive(RunOptions { epochs: Some(2.0), batch_size: Some(100), ..opts() }, 1000),
            (20, 3, 100),
            "epochs are converted with the final batch size"
        );
        assert_eq!(derive(RunOptions { epochs: Some(2.0), steps: Some(9), ..opts() }, 1000).0, 9, "--steps wins");
        let mut t = base.clone();
        plan(RunOptions { seed: Some(4), lr: Some(0.5), ..opts() }).apply_train(&mut t, 10).unwrap();
        assert_eq!((t.seed, t.lr), (4, 0.5));
        // A pretraining set smaller than one batch: the default batch shrinks to it, a given one
        // is refused, an empty set is refused.
        assert_eq!(derive(opts(), 40), (300, 50, 40));
        let mut t = base.clone();
        let e = plan(RunOptions { batch_size: Some(50), ..opts() }).apply_train(&mut t, 40).unwrap_err();
        assert!(e.to_string().contains("--batch-size 50 is larger than the 40"), "{e}");
        assert!(plan(opts()).apply_train(&mut base.clone(), 0).is_err());
        // The rate for continued pretraining applies under --init-from alone, and --lr wins.
        let continued = TrainConfig { continued_lr: Some(1e-4), ..base.clone() };
        let lr = |o: RunOptions, init: bool| {
            let mut p = plan(o);
            p.init_from = init.then(|| crate::init::InitSource::Foreign("x".into()));
            let mut t = continued.clone();
            p.apply_train(&mut t, 1000).unwrap();
            t.lr
        };
        assert_eq!(lr(opts(), false), base.lr);
        assert_eq!(lr(opts(), true), 1e-4);
        assert_eq!(lr(RunOptions { lr: Some(0.5), ..opts() }, true), 0.5);
    }

    #[test]
    fn eval_only_writes_beside_the_evaluated_run_and_fresh_runs_are_not_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("r");
        std::fs::create_dir_all(run.join("checkpoints/step-3")).unwrap();
        let record = serde_json::json!({
            "schema_version": ssl_records::run::SCHEMA_VERSION, "modality": "vision", "method": "rotation",
            "config": {"flags": {}, "resolved": {"a": 1}}, "data": {}, "git_revision": null,
            "machine": {"cpu": "c", "cores": 2, "os": "linux", "device": "Cpu", "cuda_available": false,
                        "threads": 2, "toolkit_version": "0"},
            "versions": {"toolkit": "0", "libtorch": "0"},
        });
        std::fs::write(run.join("config.json"), record.to_string()).unwrap();
        let o = RunOptions { eval_only: true, checkpoint: Some(run.join("checkpoints/step-3")), ..Default::default() };
        let p = o.resolve("vision", "rotation").unwrap();
        assert_eq!(p.run_dir, run.join("eval"));
        assert!(matches!(&p.mode, Mode::EvalOnly { run: r, .. } if r == &run));
        assert_eq!(p.evaluated::<serde_json::Value>("/a").unwrap().unwrap(), 1);
        let o = RunOptions { eval_only: true, checkpoint: Some(run.clone()), ..Default::default() };
        assert!(o.resolve("text", "mlm").unwrap_err().to_string().contains("is a vision run"));
        std::fs::write(run.join("checkpoints/step-3/state.json"), "{}").unwrap();
        std::fs::write(run.join("checkpoints/step-3/model.safetensors"), "").unwrap();
        let e = RunOptions { out: Some(run.clone()), ..Default::default() }.resolve("vision", "rotation");
        assert!(e.unwrap_err().to_string().contains("--resume"));
        assert!(RunOptions { out: Some(run), resume: true, ..Default::default() }.resolve("vision", "r").is_ok());
    }
}
