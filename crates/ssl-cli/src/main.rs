//! `ssl`: the binary behind `cargo xtask pretrain-{vision,text,speech}`.
//!
//! Each `pretrain-*` command is its modality's flags plus one call into ssl-core's run pipeline
//! with the modality's [`Recipe`]; no training or evaluation logic lives here. Exit codes: 0
//! success, 2 a bad flag, path or config file (found before any work starts), 1 a failure
//! during the run.
mod bench;

use anyhow::Result;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::{de::DeserializeOwned, Serialize};
use ssl_core::interop::ExportFormat;
use ssl_core::run::{Recipe, RunOptions};
use ssl_speech::flags::SpeechFlags;
use ssl_speech::recipe::SpeechRecipe;
use ssl_text::flags::TextFlags;
use ssl_text::recipe::TextRecipe;
use ssl_vision::flags::VisionFlags;
use ssl_vision::recipe::VisionRecipe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ssl", about = "Self-supervised pretraining with evidence: pretrain, then evaluate against scratch")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Rotation prediction, inpainting or MAE pretraining of an image encoder.
    PretrainVision(VisionFlags),
    /// Masked-language-model pretraining of a BERT-style encoder.
    PretrainText(TextFlags),
    /// Masked raw-audio-frame pretraining of a wav2vec2-shaped encoder.
    PretrainSpeech(SpeechFlags),
    /// List the finished runs below a folder: modality, method, data, steps and headline gain.
    Runs {
        /// The folder the runs are in.
        #[arg(default_value = "runs")]
        dir: PathBuf,
    },
    /// Compare runs side by side: the primary pretrained and the trained scratch accuracy at every
    /// label budget, and their curves overlaid in one plot.
    Compare {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where the overlaid plot goes.
        #[arg(long, default_value = "compare.png")]
        plot: PathBuf,
    },
    /// Rewrite runs' report.md, report.json and plots from their report.json (comparisons derived
    /// again from the rows; nothing is trained or evaluated).
    Report {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Also write the run's evidence (machine, commit, comparison table, headline) as a
        /// Markdown snippet to this file, for the docs (one run only).
        #[arg(long)]
        table: Option<PathBuf>,
    },
    /// Export a finished run's encoder for the Python ecosystem: speech as HuggingFace
    /// Wav2Vec2Model (Wav2Vec2ForPreTraining with the contrastive head), text as HuggingFace
    /// BertForMaskedLM (RobertaPreLayerNormForMaskedLM when pre-LN), a ViT as a timm
    /// VisionTransformer, a ResNet as safetensors with its own PyTorch module. Also `--export
    /// DIR` on every pretrain command.
    Export {
        /// The run directory (or one of its checkpoints).
        run: PathBuf,
        /// The new (or empty) folder to write.
        #[arg(long)]
        to: PathBuf,
        /// hf, timm or safetensors (default: the encoder's natural format above).
        #[arg(long)]
        format: Option<ExportFormat>,
    },
    /// Write a finished run's features of every input in a file or folder (images, `.txt` lines,
    /// `.wav`/`.flac` clips, read as the run's evaluation reads them) to one safetensors file:
    /// the tensor `features` [N, D] and, in its metadata, `inputs` (the N input names, as JSON).
    Embed {
        /// The run directory (or one of its checkpoints).
        run: PathBuf,
        /// A file or a folder of inputs (searched recursively; hidden entries left out).
        #[arg(long)]
        data: PathBuf,
        /// The safetensors file to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// LibTorch intra-op threads (default: LibTorch's choice).
        #[arg(long)]
        threads: Option<i32>,
    },
    /// Summarise a profiler trace (`--profile` writes RUN/profile/trace.json; `torch.profiler`'s
    /// `export_chrome_trace` writes the same format): the operators by self time, or two traces
    /// side by side, op by op.
    Trace {
        /// A Chrome/Perfetto trace.
        trace: PathBuf,
        /// A second trace to compare with (e.g. the PyTorch reference's).
        #[arg(long)]
        against: Option<PathBuf>,
        /// The steps each trace recorded (times are shown per step).
        #[arg(long, default_value_t = 1)]
        steps: u64,
        /// Operators shown.
        #[arg(long, default_value_t = 25)]
        top: usize,
    },
    /// Throughput measurements behind `cargo xtask bench`.
    Bench(bench::BenchArgs),
}

/// Why a command failed: a usage error (exit 2) or a failure while running (exit 1).
enum Failure {
    Usage(anyhow::Error),
    Run(anyhow::Error),
}

fn usage<E: Into<anyhow::Error>>(e: E) -> Failure {
    Failure::Usage(e.into())
}

fn running<E: Into<anyhow::Error>>(e: E) -> Failure {
    Failure::Run(e.into())
}

/// The flags merged over `--config FILE` (flags given on the command line win), the recipe made
/// from them, the plan resolved and checked, then the run.
fn pretrain<F, R>(
    flags: F,
    matches: &ArgMatches,
    run: impl Fn(&F) -> &RunOptions,
    recipe: impl FnOnce(F) -> Result<R, R::Error>,
) -> Result<(), Failure>
where
    F: Serialize + DeserializeOwned,
    R: Recipe,
{
    let flags = match run(&flags).config.clone() {
        Some(file) => {
            let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
            ssl_core::run::options::merge_config_file(&flags, given, &file).map_err(usage)?
        }
        None => flags,
    };
    let options = run(&flags).clone();
    let mut recipe = recipe(flags).map_err(usage)?;
    let plan = options.resolve(recipe.modality(), &recipe.method()).map_err(usage)?;
    recipe.validate(&plan).map_err(usage)?;
    ssl_core::run::execute(&mut recipe, &plan).map_err(running)?;
    Ok(())
}

fn main() -> ExitCode {
    // Before any tensor exists: freed tensors stay in the process for the next step instead of
    // being unmapped and page-faulted again (ssl_core::memory).
    ssl_core::memory::keep_freed_memory();
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let sub = matches.subcommand().map(|(_, m)| m.clone()).unwrap_or_default();
    // The last line of defence: a LibTorch error that no inner layer turned into a typed error
    // (evaluation, export, embedding, a modality's own code) ends the command with exit 1 and
    // LibTorch's message, never a panic. Training steps catch theirs first, to save the state.
    let result = ssl_core::torch_error::catch(|| command(cli.command, &sub)).unwrap_or_else(|failure| {
        Err(running(ssl_core::CoreError::TorchFailed { what: "the command".into(), message: failure.message }))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {}", message(&e));
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// Run one parsed command.
fn command(command: Cmd, sub: &ArgMatches) -> Result<(), Failure> {
    match command {
        Cmd::PretrainVision(f) => pretrain(f, sub, |f| &f.run, |f| Ok(VisionRecipe::new(f))),
        Cmd::PretrainText(f) => pretrain(f, sub, |f| &f.run, TextRecipe::new),
        Cmd::PretrainSpeech(f) => pretrain(f, sub, |f| &f.run, SpeechRecipe::new),
        Cmd::Runs { dir } => {
            print!("{}", ssl_core::run::catalog::runs_table(&dir));
            Ok(())
        }
        Cmd::Compare { runs, plot } => match ssl_core::run::catalog::compare(&runs, Some(&plot)) {
            Ok(table) => {
                print!("{table}");
                println!("plot: {}", plot.display());
                Ok(())
            }
            Err(e) => Err(usage(e)),
        },
        Cmd::Report { runs, table } => report(&runs, table.as_deref()),
        Cmd::Export { run, to, format } => export(&run, &to, format),
        Cmd::Embed { run, data, out, device, threads } => embed(&run, &data, &out, &device, threads),
        Cmd::Trace { trace, against, steps, top } => trace_summary(&trace, against.as_deref(), steps, top),
        Cmd::Bench(a) => bench::run(a).map_err(running),
    }
}

/// Something done with the recipe of a finished run's modality (`ssl export`, `ssl embed`).
trait WithRecipe {
    fn with<R: Recipe>(self) -> Result<(), R::Error>;
}

/// The run's modality picks the recipe `f` runs with.
fn with_run_recipe(run: &Path, command: &str, f: impl WithRecipe) -> Result<(), Failure> {
    let modality = ssl_core::interop::run_modality(run).map_err(usage)?;
    match modality.as_str() {
        "vision" => f.with::<VisionRecipe>().map_err(running),
        "text" => f.with::<TextRecipe>().map_err(running),
        "speech" => f.with::<SpeechRecipe>().map_err(running),
        other => {
            Err(usage(anyhow::anyhow!("{}: a {other} run; ssl {command} knows vision, text and speech", run.display())))
        }
    }
}

/// `ssl export`.
struct Export<'a>(&'a Path, &'a Path, Option<ExportFormat>);

impl WithRecipe for Export<'_> {
    fn with<R: Recipe>(self) -> Result<(), R::Error> {
        ssl_core::run::export::<R>(self.0, self.1, self.2)
    }
}

fn export(run: &Path, to: &Path, format: Option<ExportFormat>) -> Result<(), Failure> {
    ssl_core::interop::run_modality(run).map_err(usage)?;
    ssl_core::interop::create_export_dir(to).map_err(usage)?;
    with_run_recipe(run, "export", Export(run, to, format))
}

/// `ssl embed`.
struct Embed<'a>(&'a Path, &'a Path, &'a Path, tch::Device);

impl WithRecipe for Embed<'_> {
    fn with<R: Recipe>(self) -> Result<(), R::Error> {
        ssl_core::run::embed::<R>(self.0, self.1, self.2, self.3)
    }
}

fn embed(run: &Path, data: &Path, out: &Path, device: &str, threads: Option<i32>) -> Result<(), Failure> {
    let device = ssl_core::device::parse(device).map_err(usage)?;
    ssl_core::device::set_threads(threads).map_err(usage)?;
    ssl_core::embed::check_paths(data, out).map_err(usage)?;
    with_run_recipe(run, "embed", Embed(run, data, out, device))
}

/// `ssl trace`: one trace's top operators, or two side by side.
fn trace_summary(trace: &Path, against: Option<&Path>, steps: u64, top: usize) -> Result<(), Failure> {
    let a = ssl_core::profile::summarize(trace).map_err(usage)?;
    match against {
        Some(b) => {
            let b = ssl_core::profile::summarize(b).map_err(usage)?;
            print!("{}", ssl_core::profile::compare_markdown(&a, steps, &b, steps, top));
        }
        None => print!("{}", ssl_core::profile::top_ops_markdown(&a, top, steps)),
    }
    Ok(())
}

/// `ssl report`: rewrite each run's report; with `table`, write one run's evidence snippet.
fn report(runs: &[PathBuf], table: Option<&std::path::Path>) -> Result<(), Failure> {
    if table.is_some() && runs.len() != 1 {
        return Err(usage(anyhow::anyhow!("--table takes exactly one run directory")));
    }
    for r in runs {
        ssl_core::run::rewrite(r).map_err(usage)?;
    }
    if let (Some(path), Some(run)) = (table, runs.first()) {
        let snippet = ssl_core::run::catalog::evidence_table(run).map_err(usage)?;
        std::fs::write(path, snippet).map_err(|e| usage(anyhow::anyhow!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// The error and its causes, joined by `: `, each said once: library errors already quote their
/// cause in their own message (`{path}: {source}`), so a cause whose text is already there is
/// not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask pretrain-*` words as the `ssl` command they run: xtask's own flags
    /// (`--dataset`, `--data-root`, `--mirror`, each with a value) and `--` left out.
    fn as_ssl(words: &[String]) -> Vec<String> {
        let mut out = vec!["ssl".to_owned(), words[2].clone()];
        let mut rest = words[3..].iter();
        while let Some(w) = rest.next() {
            match w.as_str() {
                "--dataset" | "--data-root" | "--mirror" => {
                    rest.next();
                }
                "--" => {}
                _ => out.push(w.clone()),
            }
        }
        out
    }

    /// Every `ssl ...` command of the README and the docs, and every `cargo xtask pretrain-*` one
    /// (which runs `ssl pretrain-*`), parses with this binary's flags: a renamed or removed flag
    /// fails here. `xtask`'s own commands are parsed by its tests.
    #[test]
    fn every_documented_command_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let commands = ssl_records::doc_commands::in_workspace(&root).unwrap();
        let argv = |c: &ssl_records::doc_commands::DocCommand| match c.args.first().map(String::as_str) {
            Some("ssl") => Some(c.args.clone()),
            _ if c.args.get(2).is_some_and(|w| w.starts_with("pretrain-")) => Some(as_ssl(&c.args)),
            _ => None,
        };
        let parse = |args: &[String]| Cli::try_parse_from(args).map(|_| ());
        let (checked, failures) = ssl_records::doc_commands::parse_all(&commands, argv, parse);
        assert!(checked > 50, "only {checked} documented commands found");
        assert!(failures.is_empty(), "documented commands that no longer parse:\n{}", failures.join("\n"));
        // The check can fail: a flag the binary does not have is refused.
        assert!(Cli::try_parse_from(["ssl", "pretrain-vision", "--no-such-flag"]).is_err());
    }
}
