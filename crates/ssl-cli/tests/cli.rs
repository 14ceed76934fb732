//! The `ssl` binary itself: help, bad flags (exit 2, before any work), a config-file round trip
//! that reproduces a run's losses bit for bit on the CPU, and `--eval-only`, `ssl export` and `ssl
//! embed` on a finished run, for every modality.
use std::path::Path;

mod common;
mod embed_check;
use common::{json, ssl, text};

const COMMANDS: [&str; 3] = ["pretrain-vision", "pretrain-text", "pretrain-speech"];

#[test]
fn every_command_has_help_with_the_shared_flags() {
    for cmd in COMMANDS {
        let o = ssl(&[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{cmd} --help: {}", text(&o));
        for flag in
            ["--config", "--out", "--seed", "--steps", "--epochs", "--warmup", "--labels-per-class", "--eval-only"]
        {
            assert!(text(&o).contains(flag), "{cmd} --help lacks {flag}");
        }
    }
    assert_eq!(ssl(&["--help"]).status.code(), Some(0));
}

/// The command reference page of the docs, generated from `--help` (so it cannot drift).
fn cli_reference() -> String {
    let mut s = String::from(
        "# Command reference\n\nGenerated from `ssl <command> --help` (run `SSL_BLESS=1 cargo xtask test -p ssl-cli` \
         after changing a flag; a test fails while this page differs from the binary). Through \
         `cargo xtask`, `pretrain-*` commands take the same flags after the command name.\n",
    );
    for cmd in [
        "pretrain-vision",
        "pretrain-text",
        "pretrain-speech",
        "runs",
        "compare",
        "report",
        "export",
        "embed",
        "trace",
        "bench",
    ] {
        let o = ssl(&[cmd, "--help"]);
        s.push_str(&format!("\n## `ssl {cmd}`\n\n```text\n{}```\n", String::from_utf8_lossy(&o.stdout)));
    }
    s
}

#[test]
fn the_docs_command_reference_is_generated_from_help() {
    let page = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/src/cli.md"));
    let want = cli_reference();
    if std::env::var_os("SSL_BLESS").is_some() {
        std::fs::write(page, &want).unwrap();
    }
    let have = std::fs::read_to_string(page).unwrap_or_default();
    assert!(have == want, "docs/src/cli.md is out of date: run SSL_BLESS=1 cargo xtask test -p ssl-cli");
}

#[test]
fn bad_flags_and_paths_exit_2_with_a_message_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let out = out.to_str().unwrap();
    let no_split = d.path().join("flat");
    std::fs::create_dir_all(&no_split).unwrap();
    let unknown_key = d.path().join("bad.toml");
    std::fs::write(&unknown_key, "widht = 3\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["pretrain-vision", "--no-such-flag"], "unexpected argument"),
        (vec!["pretrain-vision", "--labels-per-class", "0"], "--labels-per-class"),
        (vec!["pretrain-vision", "--batch-size", "0"], "--batch-size"),
        (vec!["pretrain-vision", "--steps", "0"], "--steps 0"),
        (vec!["pretrain-vision", "--method", "jigsaw"], "unknown method"),
        (vec!["pretrain-vision", "--class-token"], "--class-token is for the ViT"),
        (vec!["pretrain-vision", "--data", "/nonexistent/images"], "no such file"),
        (vec!["pretrain-vision", "--eval-only"], "--checkpoint"),
        (vec!["pretrain-vision", "--config", "/nonexistent/c.toml"], "c.toml"),
        (vec!["pretrain-vision", "--config", unknown_key.to_str().unwrap()], "unknown option `widht`"),
        (vec!["pretrain-text", "--labeled", "/nonexistent/l.csv"], "no such file"),
        (vec!["pretrain-text", "--mask-rate", "1.5"], "--mask-rate"),
        (vec!["pretrain-speech", "--labeled", no_split.to_str().unwrap()], "train/<class>/"),
        (vec!["pretrain-speech", "--objective", "nope"], "nope"),
    ];
    let without_out: Vec<(Vec<&str>, &str)> = vec![(vec!["pretrain-speech", "--resume"], "--resume needs --out")];
    let cases = cases.into_iter().map(|(a, n)| (a, n, true)).chain(without_out.into_iter().map(|(a, n)| (a, n, false)));
    for (args, needle, with_out) in cases {
        let mut a = args.clone();
        if with_out {
            a.extend(["--out", out]);
        }
        let o = ssl(&a);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?} should exit 2: {t}");
        assert!(t.contains(needle), "{args:?}: the message should mention {needle}: {t}");
        assert!(!Path::new(out).join("checkpoints").exists(), "{args:?} started training");
    }
}

#[test]
fn bench_refuses_the_device_option_for_a_modality_without_it_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("bench");
    let o = ssl(&["bench", "text", "--augment-on-device", "--quick", "--out", out.to_str().unwrap()]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("--augment-on-device is an option of vision or speech only, not text's"),
        "{t}"
    );
    assert!(!out.exists(), "the refused bench wrote {}", out.display());
}

fn losses(run: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            // The loss as written (shortest round-trip float text): equal text is equal bits.
            (v["step"].as_u64().unwrap(), v["loss"].to_string())
        })
        .collect()
}

/// Run `args`, re-run the run's own config.json into a second directory, compare the losses, then
/// evaluate the first run with --eval-only.
fn round_trip(modality: &str, args: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let cmd = format!("pretrain-{modality}");
    let mut first = vec![cmd.as_str(), "--out", a.to_str().unwrap()];
    first.extend(args);
    let o = ssl(&first);
    assert_eq!(o.status.code(), Some(0), "{first:?}: {}", text(&o));
    let record = json(&a.join("config.json"));
    assert_eq!(record["schema_version"], 2);
    assert_eq!(record["modality"], modality);
    for key in ["method", "config", "data", "machine", "versions", "git_revision"] {
        assert!(record.get(key).is_some(), "config.json lacks {key}");
    }
    let report = json(&a.join("report.json"));
    assert!(report["pretraining"]["steps"].as_u64().unwrap() > 0);
    assert!(report["skipped"]["count"].is_u64(), "report.json lists skipped inputs the same way everywhere");
    let md = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(md.contains("**Headline:**") && md.contains("| final loss |"), "report.md renders tables: {md}");
    assert!(!md.contains("Pretraining: `{"), "no raw JSON in report.md");

    let config = a.join("config.json");
    let o = ssl(&[&cmd, "--config", config.to_str().unwrap(), "--out", b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "re-run from config.json: {}", text(&o));
    assert_eq!(losses(&a), losses(&b), "{modality}: the re-run reproduces the losses bit for bit");
    assert!(!losses(&a).is_empty());

    let o = ssl(&[&cmd, "--eval-only", "--checkpoint", a.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "--eval-only: {}", text(&o));
    let eval = json(&a.join("eval/report.json"));
    assert!(eval["pretraining"].is_null(), "an --eval-only report has no pretraining");
    assert_eq!(eval["evaluations"].as_array().map(Vec::len), report["evaluations"].as_array().map(Vec::len));
    // `ssl export` writes the encoder in its natural format, into a new folder only.
    let exported = d.path().join("exported");
    let o = ssl(&["export", a.to_str().unwrap(), "--to", exported.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "ssl export: {}", text(&o));
    for f in ["model.safetensors", "config.json"] {
        assert!(exported.join(f).is_file(), "ssl export wrote no {f}: {}", text(&o));
    }
    embed_check::check(modality, &a, &exported, d.path());
    let o = ssl(&["export", a.to_str().unwrap(), "--to", exported.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "a non-empty --to is refused: {}", text(&o));
    assert!(text(&o).contains("not empty"), "{}", text(&o));
    let o = ssl(&["export", a.to_str().unwrap(), "--to", d.path().join("e2").to_str().unwrap(), "--format", "timm"]);
    if modality != "vision" {
        assert_eq!(o.status.code(), Some(1), "{modality} has no timm export: {}", text(&o));
        assert!(text(&o).contains("not timm"), "{}", text(&o));
    }
    let o = ssl(&["runs", d.path().to_str().unwrap()]);
    let listed = text(&o);
    assert!(o.status.success(), "{listed}");
    for run in [&a, &b, &a.join("eval")] {
        assert!(
            listed.contains(&format!("| {} | {modality} |", run.display())),
            "ssl runs lists {}: {listed}",
            run.display()
        );
    }
    let plot = d.path().join("compare.png");
    let o = ssl(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--plot", plot.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("| 2 |") && plot.is_file(), "a side-by-side table and a plot: {}", text(&o));
    // `ssl report` rewrites report.md from report.json alone.
    std::fs::remove_file(a.join("report.md")).unwrap();
    let o = ssl(&["report", a.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(md.contains("(primary)") && md.contains("**Headline:**"), "{md}");
    let other = if modality == "vision" { "pretrain-text" } else { "pretrain-vision" };
    let o = ssl(&[
        other,
        "--eval-only",
        "--checkpoint",
        a.to_str().unwrap(),
        "--out",
        d.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "a run of another modality is refused: {}", text(&o));
    assert!(text(&o).contains(&format!("is a {modality} run")), "{}", text(&o));
}

const EVAL: [&str; 6] = ["--labels-per-class", "2", "--seeds", "1", "--eval", "linear"];

#[test]
fn vision_config_round_trip_and_eval_only() {
    let mut args = vec!["--steps", "4", "--batch-size", "8", "--width", "4", "--max-images", "64", "--max-test", "40"];
    args.extend(EVAL);
    round_trip("vision", &args);
}

#[test]
fn text_config_round_trip_and_eval_only() {
    let mut args = vec!["--steps", "3", "--batch-size", "4", "--max-len", "32", "--vocab-size", "500"];
    args.extend(EVAL);
    round_trip("text", &args);
}

#[test]
fn speech_config_round_trip_and_eval_only() {
    let mut args = vec!["--steps", "3", "--batch-size", "2", "--max-files", "12", "--crop-seconds", "0.5"];
    args.extend(EVAL);
    round_trip("speech", &args);
}

#[test]
fn export_after_pretraining_with_the_export_flag() {
    let d = tempfile::tempdir().unwrap();
    let (run, exported) = (d.path().join("run"), d.path().join("timm"));
    let mut args = vec![
        "pretrain-vision",
        "--method",
        "mae",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--max-images",
        "32",
        "--max-test",
        "20",
        "--out",
        run.to_str().unwrap(),
        "--export",
        exported.to_str().unwrap(),
    ];
    args.extend(EVAL);
    let o = ssl(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let config = json(&exported.join("config.json"));
    assert_eq!(config["model_args"]["class_token"], false, "a timm VisionTransformer: {config}");
    assert!(exported.join("model.safetensors").is_file());
    // With a CLS token, MAE exports as HF's ViTMAEForPreTraining.
    let (run2, hf) = (d.path().join("run2"), d.path().join("hf"));
    let mut with_cls: Vec<&str> = args[..args.len() - EVAL.len() - 4].to_vec();
    with_cls.extend(["--class-token", "--out", run2.to_str().unwrap(), "--export", hf.to_str().unwrap()]);
    with_cls.extend(["--export-format", "hf"]);
    with_cls.extend(EVAL);
    let o = ssl(&with_cls);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let config = json(&hf.join("config.json"));
    assert_eq!(config["architectures"][0], "ViTMAEForPreTraining", "{config}");
    assert!(hf.join("preprocessor_config.json").is_file());
    let o = ssl(&["pretrain-vision", "--export-format", "timm", "--out", d.path().join("x").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--export-format needs --export"), "{}", text(&o));
}

#[test]
fn profile_records_steps_and_trace_summarises_them() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let mut args = vec![
        "pretrain-text",
        "--steps",
        "5",
        "--batch-size",
        "4",
        "--max-len",
        "32",
        "--vocab-size",
        "500",
        "--profile",
        "2",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend(EVAL);
    let o = ssl(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("profile of 2 steps"), "{}", text(&o));
    // LibTorch's own Chrome trace: operator events with their input shapes.
    let trace = run.join("profile/trace.json");
    let v = json(&trace);
    let events = v["traceEvents"].as_array().expect("traceEvents");
    let ops: Vec<&serde_json::Value> = events.iter().filter(|e| e["cat"] == "cpu_op").collect();
    assert!(ops.iter().any(|e| e["name"] == "aten::mm" && e["args"]["Input Dims"].is_array()), "matmuls with shapes");
    let table = std::fs::read_to_string(run.join("profile/top-ops.md")).unwrap();
    assert!(table.contains("2 steps recorded") && table.contains("| `aten::"), "{table}");
    // Steps 2 and 3 of 0..5 (2 warm-up steps): one fused AdamW call per parameter group each.
    let adamw = ops.iter().filter(|e| e["name"] == "aten::_fused_adamw_").count();
    assert!(adamw > 0 && adamw % 2 == 0, "{adamw} fused AdamW calls in 2 steps");
    let o = ssl(&["trace", trace.to_str().unwrap(), "--against", trace.to_str().unwrap(), "--steps", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("| `aten::mm` |") && text(&o).contains("+0.000 |"), "{}", text(&o));
    let o = ssl(&["trace", run.join("config.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "not a trace: {}", text(&o));
}
