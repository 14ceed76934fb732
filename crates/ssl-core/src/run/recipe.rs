//! The seam every pretraining method plugs into: a [`Recipe`] supplies its data, objective,
//! encoders, corruptions and notes; [`super::execute`] does everything else, once, for every
//! modality: it applies the plan to the recipe's training and protocol settings, restores the
//! evaluated run's protocol under `--eval-only`, and hands the recipe a ready [`Trainer`].
use super::plan::RunPlan;
use crate::error::CoreError;
use crate::eval::protocol::{Corruption, EncoderFactory};
use crate::eval::LabeledSet;
use crate::eval::ProtocolConfig;
use crate::init::{InitSource, InitWeights};
use crate::trainer::{TrainConfig, TrainSummary, Trainer};
use ssl_records::skipped::SkippedInputs;
use std::path::Path;
use tch::Device;

/// What a recipe read: written into `config.json` and `report.json` under `data`.
#[derive(Debug, Clone, Default)]
pub struct DataReport {
    /// Paths and counts, in the recipe's own words.
    pub summary: serde_json::Value,
    /// Every input skipped as unreadable, pretraining and labeled data together.
    pub skipped: SkippedInputs,
}

/// What the evaluation protocol needs from a recipe.
pub struct EvalInputs<'a> {
    /// Pretrained encoders (from the evaluated weights) and scratch encoders of the same shape;
    /// also the fine-tuning augmentation and the raw-input baseline's features.
    pub factory: Box<dyn EncoderFactory + 'a>,
    pub train: LabeledSet,
    pub test: LabeledSet,
    /// The modality's corruption suite.
    pub corruptions: Vec<Corruption>,
}

/// What [`Recipe::open`] returns: what it read, and its typed settings for the seam to apply
/// the plan to ([`RunPlan::apply_train`], [`RunPlan::apply_protocol`]). The recipe keeps the
/// settings (they borrow from it), so `config.json`'s `resolved` shows the applied values.
pub struct Opened<'a> {
    pub data: DataReport,
    /// The method's training defaults (ignored under `--eval-only`).
    pub train: &'a mut TrainConfig,
    /// The examples one pretraining epoch holds (`--epochs`; a set smaller than one batch);
    /// 0 under `--eval-only`.
    pub pretrain_items: usize,
    /// The method's protocol defaults. Under `--eval-only` the seam replaces them with the
    /// evaluated run's (`config.resolved.protocol`), then applies the flags.
    pub protocol: &'a mut ProtocolConfig,
}

/// A pretraining method: everything that differs between methods and modalities.
///
/// The run pipeline ([`super::execute`]) calls, in order: [`Recipe::validate`] (cheap checks of
/// the recipe's own flags and paths), [`Recipe::open`] (read the data; the seam then applies the
/// plan to the settings it returns), then, unless the run is `--eval-only`, [`Recipe::pretrain`]
/// with a ready [`Trainer`], then [`Recipe::evaluation`] and [`Recipe::notes`]. It owns the run
/// directory, `config.json`, the report and the plots.
///
/// Five methods are required; the rest have defaults.
pub trait Recipe {
    /// The recipe's error; ssl-core's errors convert into it.
    type Error: std::error::Error + Send + Sync + 'static + From<CoreError>;
    /// `vision`, `text`, `speech`, or a user recipe's name.
    fn modality(&self) -> &'static str;
    /// The pretext task (`rotation`, `mlm`, `best-rq`, ...).
    fn method(&self) -> String;
    /// Read the data (the pretraining set unless the run is `--eval-only`, and the labeled
    /// split), and return the typed settings the plan applies to. Under `--eval-only`, the
    /// evaluated run's model comes from [`RunPlan::evaluated`].
    fn open(&mut self, plan: &RunPlan) -> std::result::Result<Opened<'_>, Self::Error>;
    /// Pretrain with `trainer`: the plan's training settings, this run's directory and device,
    /// and where it starts (resumed, or from `--init-from`'s weights). The recipe builds its
    /// objective and data source and calls [`Trainer::fit`].
    fn pretrain(&mut self, trainer: Trainer) -> std::result::Result<TrainSummary, Self::Error>;
    /// The protocol's inputs, with the pretrained encoder read from `weights` (a run directory
    /// or one of its checkpoints) onto `device`.
    fn evaluation(&mut self, weights: &Path, device: Device) -> std::result::Result<EvalInputs<'_>, Self::Error>;

    /// The command's flags as given (written to `config.json` as `config.flags`; running them
    /// again reproduces the run).
    fn flags(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// The typed configuration the run uses, after [`Recipe::open`] (`config.resolved`).
    fn resolved(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Check the recipe's own flags and paths. Nothing may be decoded or trained here.
    fn validate(&self, _plan: &RunPlan) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
    /// A one-line description of the pretraining about to start.
    fn describe(&self) -> String {
        format!("pretraining {} ({})", self.method(), self.modality())
    }
    /// Notes for the report: the encoder, the baselines, anything a reader needs.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Export the encoder of the finished run in `run_dir` into the new folder `to`, in
    /// `format` (`None`: the encoder's natural format). The run's own `config.json` and newest
    /// checkpoint say what is exported ([`crate::interop::RunWeights`]), so no recipe is needed. Called by [`super::export`] (`ssl export`) and after pretraining with `--export`.
    /// Recipes without an export refuse.
    fn export(
        run_dir: &Path,
        _to: &Path,
        format: Option<crate::interop::ExportFormat>,
    ) -> std::result::Result<(), Self::Error>
    where
        Self: Sized,
    {
        Err(CoreError::InvalidArgument(format!(
            "{}: this method's encoder has no export{}",
            run_dir.display(),
            format.map(|f| format!(" as {f}")).unwrap_or_default()
        ))
        .into())
    }
    /// `ssl embed`: the inputs in `data` (a file or a folder), read as this modality's evaluation
    /// reads labeled data, and the encoder of the finished run `run` (a run directory or one of
    /// its checkpoints) on `device`. Like [`Recipe::export`], the run's own `config.json` says
    /// which encoder, so no recipe is needed. Recipes without one refuse.
    fn embedder(run: &Path, data: &Path, device: Device) -> std::result::Result<crate::embed::EmbedInputs, Self::Error>
    where
        Self: Sized,
    {
        let _ = (data, device);
        Err(CoreError::InvalidArgument(format!("{}: this method's encoder has no embed", run.display())).into())
    }
    /// The weights `--init-from` names, under the objective's variable names. Called after
    /// [`Recipe::open`] when pretraining starts; the seam gives them to the trainer. The default takes one of our runs of this
    /// modality (the model flags must give the same model) and refuses other tools' checkpoints.
    fn init_weights(&mut self, source: &InitSource) -> std::result::Result<InitWeights, Self::Error> {
        match source {
            InitSource::Run { path, .. } => Ok(InitWeights::from_run(path, self.modality())?),
            InitSource::Foreign(dir) => Err(CoreError::InvalidArgument(format!(
                "--init-from {}: importing another tool's {} checkpoint is not supported; give one of our {} runs",
                dir.display(),
                self.modality(),
                self.modality()
            ))
            .into()),
        }
    }
    /// Further evaluations after the main one (e.g. a second test set) under the run's
    /// `protocol`; their lines go into the report's notes.
    fn extra_evaluations(
        &mut self,
        _weights: &Path,
        _protocol: &ProtocolConfig,
        _device: Device,
    ) -> std::result::Result<Vec<String>, Self::Error> {
        Ok(Vec::new())
    }
}
