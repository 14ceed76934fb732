//! `ssl`: the binary behind `cargo xtask pretrain-{vision,text,speech}`.
//!
//! Each modality lives in its own module; the flags every modality shares and the end of every
//! run (report, plots, summary) live in [`common`].
mod bench;
mod common;
mod speech;
mod text;
mod vision;

use clap::{Parser, Subcommand};
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
    PretrainVision(vision::VisionArgs),
    /// Masked-language-model pretraining of a BERT-style encoder.
    PretrainText(text::TextArgs),
    /// Masked raw-audio-frame pretraining of a wav2vec2-shaped encoder.
    PretrainSpeech(speech::SpeechArgs),
    /// Throughput measurements behind `cargo xtask bench`.
    Bench(bench::BenchArgs),
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
        Cmd::PretrainVision(a) => vision::run(a),
        Cmd::PretrainText(a) => text::run(a),
        Cmd::PretrainSpeech(a) => speech::run(a),
        Cmd::Bench(a) => bench::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
