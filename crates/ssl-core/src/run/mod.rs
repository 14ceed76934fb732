//! One run pipeline for every modality.
//!
//! A command's flags ([`options::RunOptions`] plus the method's own) are resolved once into a
//! validated [`plan::RunPlan`]; a [`recipe::Recipe`] supplies what differs between methods; and
//! [`execute`] runs the same life cycle for all of them:
//!
//! 1. validate the plan and the recipe's own flags and paths (before anything is read); with
//!    `--nproc-per-node N`, start N workers of this command ([`crate::dist::launch`]) and return
//!    rank 0's report; a worker (or a rank of torchrun or srun) joins the process group;
//! 2. lock the run directory (a second run on it is refused), catch SIGINT/SIGTERM (the trainer
//!    then stops at the next step with a checkpoint), let the recipe open the data, and apply
//!    the plan to the training and protocol settings it returns ([`Opened`]; under `--eval-only`
//!    the evaluated run's protocol first);
//! 3. write `config.json` (one schema: [`ssl_records::run::RunRecord`]);
//! 4. hand the recipe a ready [`crate::trainer::Trainer`] (the plan's settings, the run
//!    directory, resumed or from the weights of `--init-from`, [`Recipe::init_weights`]) and let
//!    it pretrain (skipped by `--eval-only`);
//! 5. run the evaluation protocol against scratch and the raw baseline, under corruptions;
//! 6. write `report.json`, `report.md` and the plots, and print the summary.
//!
//! With `--export DIR`, the encoder is then exported by [`export`], the same function `ssl
//! export` calls.
//!
//! A run directory always holds `config.json`, `metrics.jsonl`, `checkpoints/`, `report.json`,
//! `report.md`, `accuracy.png` and `loss.png`; an `--eval-only` run writes the same files except
//! the pretraining ones, into `--out` or `<evaluated run>/eval`.
//!
//! In a data-parallel run rank 0 alone locks the run directory, prepares the data (the others
//! wait, then read what it prepared), writes `config.json`, checkpoints, metrics and the report,
//! and evaluates; every rank pretrains.
//!
//! ```no_run
//! # fn demo<R: ssl_core::run::Recipe>(mut recipe: R, options: ssl_core::run::RunOptions) -> Result<(), R::Error> {
//! let plan = options.resolve(recipe.modality(), &recipe.method())?;
//! // `None` on the ranks other than 0 of a data-parallel run.
//! if let Some(report) = ssl_core::run::execute(&mut recipe, &plan)? {
//!     println!("{}", report.headline());
//! }
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod lock;
pub mod options;
pub mod plan;
pub mod recipe;

pub use options::RunOptions;
pub use plan::{Export, Mode, RunPlan};
pub use recipe::{DataReport, EvalInputs, Opened, Recipe};

use crate::error::{CoreError, Result};
use crate::eval::report::{detect_machine, Report};
use crate::eval::ProtocolConfig;
use crate::trainer::{TrainConfig, TrainSummary, Trainer};
use ssl_records::run::{RunRecord, Versions, LIBTORCH_VERSION, SCHEMA_VERSION};
use std::path::Path;
use tch::Device;

/// The `report.json` schema version this toolkit writes.
pub const REPORT_SCHEMA_VERSION: u32 = 3;

/// Run `recipe` as `plan` says: validate, open the data, pretrain (unless `--eval-only`),
/// evaluate, report. Returns the report it wrote (rank 0's, read back, when this process
/// launched workers), or `None` on a rank other than 0.
pub fn execute<R: Recipe>(recipe: &mut R, plan: &RunPlan) -> std::result::Result<Option<Report>, R::Error> {
    recipe.validate(plan)?;
    let run_dir = plan.run_dir.clone();
    if let Some(n) = plan.launch {
        launch_workers(plan, n)?;
        return Ok(Some(Report::read(&run_dir)?));
    }
    plan.apply_threads();
    let group = crate::dist::init(&plan.world, plan.dist_backend, plan.device, plan.dist_timeout, plan.dist_buckets)?;
    let main = plan.world.is_main();
    std::fs::create_dir_all(&run_dir).map_err(|e| CoreError::io(&run_dir, e))?;
    // Before anything is read or written: a recipe may write into the run directory as it
    // opens its data (text packs its corpus there). Rank 0 holds the lock for all ranks.
    let _lock = if main { Some(lock::RunLock::acquire(&run_dir)?) } else { None };
    crate::interrupt::install().map_err(|e| CoreError::io("signal handlers", e))?;
    let (data, train, protocol) = open_data(recipe, plan, group)?;
    let record = write_record(recipe, plan, &data)?;
    let init = match (&plan.init_from, &plan.mode) {
        (Some(source), Mode::Pretrain { .. }) => Some(recipe.init_weights(source)?),
        _ => None,
    };
    let init_note = init.as_ref().map(|i| {
        format!("Pretraining started from {} ({}), not from a random initialisation.", i.source.display(), i.kind)
    });
    let (summary, weights) = match &plan.mode {
        Mode::Pretrain { resume } => {
            let world = match plan.world.is_distributed() {
                true => format!(", {} processes", plan.world.size),
                false => String::new(),
            };
            eprintln!("==> {} (run directory {}{world})", recipe.describe(), run_dir.display());
            let mut trainer = Trainer::new(train, &run_dir, plan.device).resuming(*resume);
            trainer.init = init;
            (Some(recipe.pretrain(trainer)?), run_dir.clone())
        }
        Mode::EvalOnly { weights, .. } => (None, weights.clone()),
    };
    // Rank 0 alone evaluates and reports.
    if !main {
        return Ok(None);
    }
    let report = evaluate_and_report(recipe, plan, &protocol, &weights, summary, record, data, init_note)?;
    finish(&run_dir, &report)?;
    if let (Some(export), Mode::Pretrain { .. }) = (&plan.export, &plan.mode) {
        self::export::<R>(&run_dir, &export.dir, export.format)?;
    }
    Ok(Some(report))
}

/// The recipe opens its data (rank 0 first, the others after a barrier, reading what it
/// wrote), and the plan is applied to the settings it returns.
fn open_data<R: Recipe>(
    recipe: &mut R,
    plan: &RunPlan,
    group: Option<&crate::dist::ProcessGroup>,
) -> std::result::Result<(DataReport, TrainConfig, ProtocolConfig), R::Error> {
    let main = plan.world.is_main();
    if let (Some(g), false) = (group, main) {
        g.barrier()?;
    }
    let opened = apply_plan(plan, recipe.open(plan)?)?;
    if let (Some(g), true) = (group, main) {
        g.barrier()?;
    }
    Ok(opened)
}

/// The plan applied to a recipe's settings, in place (so its `resolved` shows them): under
/// `--eval-only` the evaluated run's protocol replaces the method's defaults first, and the
/// training settings are left alone.
fn apply_plan(plan: &RunPlan, opened: Opened<'_>) -> Result<(DataReport, TrainConfig, ProtocolConfig)> {
    let Opened { data, train, pretrain_items, protocol } = opened;
    if let Some(saved) = plan.evaluated::<Option<ProtocolConfig>>("/protocol") {
        if let Some(saved) = saved? {
            *protocol = saved;
        }
    }
    plan.apply_protocol(protocol);
    if !plan.is_eval_only() {
        plan.apply_train(train, pretrain_items)?;
    }
    Ok((data, train.clone(), protocol.clone()))
}

/// `config.json` (rank 0), and the first skipped inputs named on the terminal.
fn write_record<R: Recipe>(recipe: &R, plan: &RunPlan, data: &DataReport) -> std::result::Result<RunRecord, R::Error> {
    let record = RunRecord {
        schema_version: SCHEMA_VERSION,
        modality: recipe.modality().into(),
        method: recipe.method(),
        config: serde_json::json!({ "flags": recipe.flags(), "resolved": recipe.resolved() }),
        data: serde_json::json!({ "summary": data.summary, "skipped": data.skipped }),
        machine: detect_machine(plan.device),
        versions: Versions { toolkit: env!("CARGO_PKG_VERSION").into(), libtorch: LIBTORCH_VERSION.into() },
        git_revision: ssl_records::run::git_revision(Path::new(env!("CARGO_MANIFEST_DIR"))),
    };
    if plan.world.is_main() {
        record.write(&plan.run_dir).map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
    }
    for s in data.skipped.items.iter().take(5) {
        eprintln!("warning: skipped {s}");
    }
    if data.skipped.count > 5 {
        eprintln!("warning: ... {} inputs skipped in all (listed in report.json)", data.skipped.count);
    }
    Ok(record)
}

/// The evaluation protocol on the recipe's inputs, and the report of the whole run.
#[allow(clippy::too_many_arguments)]
fn evaluate_and_report<R: Recipe>(
    recipe: &mut R,
    plan: &RunPlan,
    protocol: &ProtocolConfig,
    weights: &Path,
    summary: Option<TrainSummary>,
    record: RunRecord,
    data: DataReport,
    init_note: Option<String>,
) -> std::result::Result<Report, R::Error> {
    eprintln!(
        "==> evaluating against scratch ({} labels/class, {} seeds ({} at the headline budget), {})",
        protocol.labels_per_class.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(","),
        protocol.seeds,
        protocol.seeds.max(protocol.headline_seeds),
        RunPlan::evals(protocol)
    );
    let evaluation = {
        let inputs = recipe.evaluation(weights, plan.device)?;
        crate::eval::evaluate(
            inputs.factory.as_ref(),
            &inputs.train,
            &inputs.test,
            &inputs.corruptions,
            protocol,
            plan.device,
        )?
    };
    let mut notes = recipe.notes();
    notes.extend(init_note);
    if plan.world.is_distributed() && summary.is_some() {
        notes.push(format!(
            "Pretrained data-parallel by {} processes (c10d, {:?}): the batch size above is per process, the global batch {} times it.",
            plan.world.size, plan.dist_backend, plan.world.size
        ));
    }
    notes.push(protocol.describe());
    notes.extend(recipe.extra_evaluations(weights, protocol, plan.device)?);
    Ok(Report {
        schema_version: REPORT_SCHEMA_VERSION,
        modality: recipe.modality().into(),
        method: recipe.method(),
        machine: record.machine,
        pretraining: summary.map(|s| s.report),
        data: data.summary,
        skipped: data.skipped,
        notes,
        memory: Some(crate::memory::usage()),
        evaluation,
    })
}

/// Start `n` workers of this command (`--nproc-per-node`) and wait for them. They get the same
/// arguments, plus the run directory this process resolved when none was given (every rank must
/// use the same one) and the plan's thread share when `--threads` was not given.
fn launch_workers(plan: &RunPlan, n: usize) -> Result<()> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if plan.options().out.is_none() {
        args.push("--out".into());
        args.push(plan.run_dir.clone().into_os_string());
    }
    if let (None, Some(t)) = (plan.options().threads, plan.threads) {
        args.push("--threads".into());
        args.push(t.to_string().into());
    }
    crate::dist::launch::run_workers(n, &args, plan.threads)
}

/// Export the encoder of the finished run `run_dir` into the new or empty folder `to`
/// (`ssl export`, and `--export` after pretraining): the folder is checked, then the recipe
/// writes it ([`Recipe::export`]).
pub fn export<R: Recipe>(
    run_dir: &Path,
    to: &Path,
    format: Option<crate::interop::ExportFormat>,
) -> std::result::Result<(), R::Error> {
    crate::interop::create_export_dir(to)?;
    R::export(run_dir, to, format)?;
    eprintln!(
        "==> exported {} into {}{}",
        run_dir.display(),
        to.display(),
        format.map(|f| format!(" ({f})")).unwrap_or_default()
    );
    Ok(())
}

/// `ssl embed`: the paths checked, the inputs read by the recipe ([`Recipe::embedder`]), the
/// features computed on `device` and written to `out` with the inputs' names
/// ([`crate::embed`]).
pub fn embed<R: Recipe>(run: &Path, data: &Path, out: &Path, device: Device) -> std::result::Result<(), R::Error> {
    crate::embed::check_paths(data, out)?;
    let run_dir = crate::interop::run_dir_of(run)?;
    let inputs = R::embedder(run, data, device)?;
    let skipped = inputs.skipped.count;
    let mut e = crate::embed::embed(inputs, device);
    e.relative_to(data);
    let checkpoint = crate::checkpoint::resolve(run)?;
    e.metadata.push(("modality".into(), crate::interop::run_modality(run)?));
    e.metadata.push(("run".into(), run_dir.display().to_string()));
    e.metadata.push(("data".into(), data.display().to_string()));
    e.metadata.push(("checkpoint".into(), checkpoint.display().to_string()));
    e.write(out)?;
    let size = e.features.size();
    eprintln!(
        "==> {} inputs embedded ({} features each) into {}{}",
        size[0],
        size[1],
        out.display(),
        if skipped > 0 { format!("; {skipped} unreadable inputs skipped") } else { String::new() }
    );
    Ok(())
}

/// Write `report.json`, `report.md` and the plots into `run_dir`, log the evaluation to
/// TensorBoard, and print the summary.
pub fn finish(run_dir: &Path, report: &Report) -> Result<()> {
    crate::sinks::log_scalars(run_dir, &report.scalars())?;
    write_outputs(run_dir, report)
}

/// `ssl report RUN`: read a run's `report.json`, derive its comparisons again from the rows
/// (the current rule), and rewrite `report.json`, `report.md` and the plots; nothing is trained
/// or evaluated.
pub fn rewrite(run_dir: &Path) -> Result<Report> {
    let report = Report::read(run_dir)?;
    let dir = if run_dir.is_dir() { run_dir.to_path_buf() } else { run_dir.parent().unwrap_or(run_dir).to_path_buf() };
    write_outputs(&dir, &report)?;
    Ok(report)
}

fn write_outputs(run_dir: &Path, report: &Report) -> Result<()> {
    report.write(run_dir)?;
    let mut plots = Vec::new();
    match crate::plots::accuracy_plot(report, &run_dir.join("accuracy.png")) {
        Ok(()) => plots.push("accuracy.png"),
        Err(e) => eprintln!("warning: {e}"),
    }
    if !report.evaluation.robustness.is_empty() {
        match crate::plots::robustness_plot(report, &run_dir.join("robustness.png")) {
            Ok(()) => plots.push("robustness.png"),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    if report.pretraining.is_some() {
        match crate::plots::loss_plot(run_dir, &run_dir.join("loss.png")) {
            Ok(()) => plots.push("loss.png"),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    println!("\n{}", report.summary_table());
    println!("{}", report.headline().replace("**", ""));
    if let Some(s) = &report.pretraining {
        println!(
            "pretraining: {} steps in {:.0} s wall, {:.0} CPU-s ({:.0} samples/s), final loss {:.4}",
            s.steps, s.wall_secs, s.cpu_secs, s.samples_per_s, s.final_loss
        );
    }
    println!(
        "run directory: {} (config.json, metrics.jsonl, checkpoints/, report.json, report.md, {})",
        run_dir.display(),
        plots.join(", ")
    );
    Ok(())
}

/// A path to the data committed under the workspace (the defaults every command runs on):
/// relative to the working directory if it exists there, else relative to the source tree this
/// toolkit was built from; the relative path if neither exists (so errors name it).
pub fn workspace_path(rel: impl AsRef<Path>) -> std::path::PathBuf {
    let here = rel.as_ref().to_path_buf();
    if here.exists() {
        return here;
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(&here);
    if ws.exists() {
        ws
    } else {
        here
    }
}
