//! The run options every `pretrain-*` command shares, as parsed (the "low-level" arguments), and
//! config files.
//!
//! A command's flags are one serde + clap struct: the modality's own flags with [`RunOptions`]
//! flattened into it. The same struct is what a config file holds (TOML or JSON, the keys are the
//! flag names with `_` for `-`), and what a run writes into its `config.json` under
//! `config.flags`, so `--config runs/x/config.json` runs the same configuration again. Flags given
//! on the command line override the file. Nothing here derives a value: [`super::plan`] does
//! that, once.
use crate::error::{CoreError, Result};
use crate::eval::EvalKind;
use crate::interop::ExportFormat;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Flags accepted by every pretraining command, with the same meaning in each.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// Read the options from this TOML or JSON file (a run's config.json works too); flags given
    /// on the command line override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// The run directory (default: `runs/<modality>-<method>-<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The run seed: every random choice (initialisation, data order, masking, augmentation,
    /// few-label subsets) derives from it.
    #[arg(long)]
    pub seed: Option<u64>,
    /// cpu, cuda or cuda:N. Asking for CUDA without a GPU is an error, never a silent fallback.
    #[arg(long)]
    pub device: Option<String>,
    /// Intra-op threads for LibTorch (default: all cores).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Pretraining steps (optimizer updates). Wins over --epochs.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Pretraining epochs over the unlabeled data, converted to steps once the data is counted.
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Pretraining batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warm-up steps (default: the method's warm-up fraction of the steps).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Write a resumable checkpoint every N steps, besides the last one (0: only the last).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Log the loss and metrics every N steps (default: the method's).
    #[arg(long, value_name = "N")]
    pub log_every: Option<u64>,
    /// Record N pretraining steps (after up to 2 warm-up steps) with LibTorch's profiler: a
    /// Chrome/Perfetto trace and a table of the operators that took the time, in RUN/profile/.
    #[arg(long, value_name = "N")]
    pub profile: Option<u64>,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// The memory this run may use, e.g. 6G, 512M or bytes (default: the container's limit,
    /// else the memory available). Before pretraining, four steps measured in a child process must
    /// fit in it, or the run is refused with a batch size that fits.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Skip that memory check.
    #[arg(long)]
    pub no_memory_check: bool,
    /// Start pretraining from these weights instead of a random initialisation (continued
    /// pretraining): one of our run directories (or checkpoints) of this modality, or a
    /// HuggingFace directory (config.json + model.safetensors) the modality imports. A resumed
    /// run continues from its own checkpoint.
    #[arg(long, value_name = "DIR")]
    pub init_from: Option<PathBuf>,
    /// Skip pretraining and evaluate the encoder of an existing run (`--checkpoint RUN_DIR`);
    /// the report goes to --out, or to RUN_DIR/eval.
    #[arg(long)]
    pub eval_only: bool,
    /// With --eval-only: the run directory (or one of its checkpoints) to evaluate.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Labels per class for the evaluation, comma-separated (e.g. 1,5,10,50).
    #[arg(long, value_delimiter = ',')]
    pub labels_per_class: Option<Vec<usize>>,
    /// Few-label subsets (seeds) per label budget (default 3, and 5 at the headline budget;
    /// given, it applies to every budget unless --headline-seeds is given too).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Seeds at the headline budget (10 labels per class where evaluated, else the fewest above 1).
    #[arg(long)]
    pub headline_seeds: Option<usize>,
    /// The full evaluation protocol: at least 5 seeds everywhere, 5-fold cross-validation of
    /// fine-tuning on every seed's subset (the default cross-validates 3-fold on the first seed's
    /// subset per budget and reuses the choice).
    #[arg(long)]
    pub full_protocol: bool,
    /// Evaluations to run: linear, knn, finetune (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub eval: Option<Vec<EvalKind>>,
    /// Most fine-tuning steps per evaluation (the budget is epochs over the labeled subset,
    /// clamped to this).
    #[arg(long)]
    pub finetune_max_steps: Option<usize>,
    /// Data-parallel pretraining with N local worker processes (started by this command, with
    /// torchrun's variables); --batch-size is per process. Ignored inside torchrun or srun,
    /// which start the processes themselves.
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
    /// The collective backend of a data-parallel run (default: gloo on the CPU, nccl on CUDA).
    #[arg(long, value_enum)]
    pub dist_backend: Option<crate::dist::Backend>,
    /// Seconds a data-parallel collective may wait for a peer before the run fails (default
    /// 600); a crashed peer fails the others at once.
    #[arg(long, value_name = "SECS")]
    pub dist_timeout: Option<f64>,
    /// The size of the gradient buckets a data-parallel run all-reduces, in MiB (default 25, as
    /// DDP's bucket_cap_mb; the first bucket is 1 MiB).
    #[arg(long, value_name = "MB")]
    pub dist_bucket_mb: Option<f64>,
    /// Send the gradient buckets only after backward, instead of from backward's hooks as each
    /// one fills (DDP's overlap, the default).
    #[arg(long)]
    pub no_dist_overlap: bool,
    /// After pretraining, export the encoder into this new (or empty) folder, as `ssl export`
    /// does.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// The format of --export: hf, timm or safetensors (default: the encoder's natural one, see
    /// `ssl export --help`).
    #[arg(long)]
    pub export_format: Option<ExportFormat>,
}

/// Merge a config file under the flags a command was given.
///
/// `parsed` is the command's flags as clap parsed them (defaults included); `given` says whether
/// the flag with that id was on the command line. The file's values are taken for every flag
/// that was not given. Keys the command does not know are an error that names them.
pub fn merge_config_file<A>(parsed: &A, given: impl Fn(&str) -> bool, file: &Path) -> Result<A>
where
    A: Serialize + DeserializeOwned,
{
    let from_file = read_config_file(file)?;
    let serde_json::Value::Object(cli) =
        serde_json::to_value(parsed).map_err(|e| CoreError::InvalidArgument(e.to_string()))?
    else {
        return Err(CoreError::InvalidArgument("command flags are not a map".into()));
    };
    let mut merged = serde_json::Map::new();
    for (k, v) in from_file {
        if !cli.contains_key(&k) {
            let mut known: Vec<&String> = cli.keys().collect();
            known.sort();
            return Err(CoreError::InvalidArgument(format!(
                "{}: unknown option `{k}` (known: {})",
                file.display(),
                known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        merged.insert(k, v);
    }
    for (k, v) in cli {
        if given(&k) || !merged.contains_key(&k) {
            merged.insert(k, v);
        }
    }
    serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| CoreError::InvalidArgument(format!("{}: {e}", file.display())))
}

/// The flags in a config file: a TOML or JSON map of flags, or a run's `config.json` (its
/// `config.flags`).
fn read_config_file(file: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(file).map_err(|e| CoreError::io(file, e))?;
    let is_toml = file.extension().is_some_and(|e| e == "toml");
    let value: serde_json::Value = if is_toml {
        let t: toml::Table =
            toml::from_str(&text).map_err(|e| CoreError::InvalidArgument(format!("{}: {e}", file.display())))?;
        serde_json::to_value(t).map_err(|e| CoreError::json(file, e))?
    } else {
        serde_json::from_str(&text).map_err(|e| CoreError::json(file, e))?
    };
    // A run's own config.json holds the flags under config.flags.
    let flags = match value.get("schema_version").is_some() {
        true => value.pointer("/config/flags").cloned().ok_or_else(|| {
            CoreError::InvalidArgument(format!("{} is a run record without config.flags", file.display()))
        })?,
        false => value,
    };
    match flags {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(CoreError::InvalidArgument(format!("{} does not hold a map of options", file.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug, Clone, Serialize, Deserialize, PartialEq)]
    struct Flags {
        #[command(flatten)]
        #[serde(flatten)]
        run: RunOptions,
        #[arg(long, default_value = "rotation")]
        method: String,
        #[arg(long)]
        width: Option<i64>,
    }

    fn parse(args: &[&str]) -> (Flags, clap::ArgMatches) {
        use clap::{CommandFactory, FromArgMatches};
        let m = Flags::command().get_matches_from(std::iter::once("t").chain(args.iter().copied()));
        (Flags::from_arg_matches(&m).unwrap(), m)
    }

    fn given(m: &clap::ArgMatches) -> impl Fn(&str) -> bool + '_ {
        |id| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.toml");
        std::fs::write(&f, "method = \"mae\"\nwidth = 8\nsteps = 7\nlabels_per_class = [1, 5]\n").unwrap();
        let (parsed, m) = parse(&["--steps", "3", "--config", f.to_str().unwrap()]);
        let merged = merge_config_file(&parsed, given(&m), &f).unwrap();
        assert_eq!(merged.run.steps, Some(3), "the flag wins");
        assert_eq!(merged.method, "mae", "the file wins over a default");
        assert_eq!(merged.width, Some(8));
        assert_eq!(merged.run.labels_per_class, Some(vec![1, 5]));
    }

    #[test]
    fn a_run_record_is_a_config_file_and_unknown_keys_are_named() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("config.json");
        std::fs::write(&f, r#"{"schema_version": 2, "config": {"flags": {"width": 4, "seed": 9}}}"#).unwrap();
        let (parsed, m) = parse(&[]);
        let merged = merge_config_file(&parsed, given(&m), &f).unwrap();
        assert_eq!((merged.width, merged.run.seed), (Some(4), Some(9)));
        std::fs::write(&f, r#"{"widht": 4}"#).unwrap();
        let e = merge_config_file(&parsed, given(&m), &f).unwrap_err().to_string();
        assert!(e.contains("unknown option `widht`"), "{e}");
    }
}

/// A size in bytes: a number, optionally followed by K, M, G or T (powers of 1024; a trailing
/// `B` or `iB` is allowed).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let value: f64 = digits.trim().parse().map_err(|_| format!("`{s}` is not a size (e.g. 6G, 512M, 1000000)"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("`{s}`: the size must be positive"));
    }
    Ok((value * (1u64 << shift) as f64) as u64)
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_read_with_binary_suffixes() {
        assert_eq!(parse_size("6G"), Ok(6 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
    }
}
