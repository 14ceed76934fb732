//! The seam every pretraining method plugs into: a [`Recipe`] supplies its data, objective,
//! encoders, corruptions and notes; [`super::execute`] does everything else, once, for every
//! modality.
use super::plan::RunPlan;
use crate::error::{CoreError, Result};
use crate::eval::protocol::{Corruption, EncoderFactory};
use crate::eval::LabeledSet;
use crate::init::{InitSource, InitWeights};
use crate::loader::DataSource;
use crate::trainer::{Objective, Start, TrainConfig, TrainSummary, Trainer};
use ssl_records::skipped::SkippedInputs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// Where a recipe runs: the plan, the run directory, the weights pretraining starts from, and
/// the one way to train.
pub struct RunContext<'a> {
    pub plan: &'a RunPlan,
    pub run_dir: PathBuf,
    pub device: Device,
    /// `--init-from`, converted by [`Recipe::init_weights`].
    pub init: Option<InitWeights>,
}

impl RunContext<'_> {
    /// How the trainer starts: resumed (`--resume`), else from [`RunContext::init`] when given.
    pub fn start(&self) -> Start<'_> {
        Start { resume: self.plan.resume(), init: self.init.as_ref() }
    }

    /// Train `objective` on `source` with the shared trainer in this run's directory, resuming
    /// when the plan says so. `model_config` (the model and method, not the run length) is stored
    /// in every checkpoint and checked on resume.
    pub fn fit<O, S>(
        &self,
        train: &TrainConfig,
        model_config: serde_json::Value,
        objective: &mut O,
        source: Arc<S>,
    ) -> Result<TrainSummary>
    where
        O: Objective + ?Sized,
        S: DataSource<Batch = O::Batch>,
    {
        let mut trainer = Trainer::new(train.clone(), &self.run_dir, self.device);
        trainer.model_config = model_config;
        trainer.fit(objective, source, self.start())
    }
}

/// A pretraining method: everything that differs between methods and modalities.
///
/// The run pipeline ([`super::execute`]) calls, in order: [`Recipe::validate`] (cheap checks of
/// the recipe's own flags and paths), [`Recipe::open`] (read the data, apply the plan to the
/// typed config), then, unless the run is `--eval-only`, [`Recipe::pretrain`], then
/// [`Recipe::evaluation`] and [`Recipe::notes`]. It owns the run directory, `config.json`, the
/// report and the plots.
pub trait Recipe {
    /// The recipe's error; ssl-core's errors convert into it.
    type Error: std::error::Error + Send + Sync + 'static + From<CoreError>;
    /// `vision`, `text`, `speech`, or a user recipe's name.
    fn modality(&self) -> &'static str;
    /// The pretext task (`rotation`, `mlm`, `best-rq`, ...).
    fn method(&self) -> String;
    /// The command's flags as given (written to `config.json` as `config.flags`; running them
    /// again reproduces the run).
    fn flags(&self) -> serde_json::Value;
    /// The typed configuration the run uses, after [`Recipe::open`] (`config.resolved`).
    fn resolved(&self) -> serde_json::Value;
    /// Check the recipe's own flags and paths. Nothing may be decoded or trained here.
    fn validate(&self, plan: &RunPlan) -> std::result::Result<(), Self::Error>;
    /// Read the data (the pretraining set unless the run is `--eval-only`, and the labeled
    /// split), and apply the plan to the typed configuration ([`RunPlan::apply_train`],
    /// [`RunPlan::apply_protocol`]).
    fn open(&mut self, plan: &RunPlan) -> std::result::Result<DataReport, Self::Error>;
    /// A one-line description of the pretraining about to start.
    fn describe(&self) -> String;
    /// Pretrain with [`RunContext::fit`].
    fn pretrain(&mut self, ctx: &RunContext<'_>) -> std::result::Result<TrainSummary, Self::Error>;
    /// The protocol's inputs, with the pretrained encoder read from `weights` (a run directory
    /// or one of its checkpoints).
    fn evaluation(&mut self, weights: &Path, ctx: &RunContext<'_>) -> std::result::Result<EvalInputs<'_>, Self::Error>;
    /// The evaluation protocol's settings (after the plan was applied).
    fn protocol(&self) -> crate::eval::ProtocolConfig;
    /// Notes for the report: the encoder, the baselines, anything a reader needs.
    fn notes(&self) -> Vec<String>;
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
    /// [`Recipe::open`] when pretraining starts. The default takes one of our runs of this
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
    /// Further evaluations after the main one (e.g. a second test set); their lines go into the
    /// report's notes.
    fn extra_evaluations(
        &mut self,
        _weights: &Path,
        _ctx: &RunContext<'_>,
    ) -> std::result::Result<Vec<String>, Self::Error> {
        Ok(Vec::new())
    }
}
