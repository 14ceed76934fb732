//! `cargo xtask bench --quick` runs end to end for every modality and writes a well-formed
//! bench.json (no timing assertions: speed lives in the benchmark, not in tests).
use std::process::Command;

#[test]
fn quick_bench_writes_well_formed_json() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "--quick", "--out"])
        .arg(out.path())
        .status()
        .expect("xtask runs");
    assert!(status.success(), "cargo xtask bench --quick failed");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("bench.json")).unwrap()).unwrap();
    assert_eq!(report["quick"], true);
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(report["git_rev"].is_string() && report["versions"]["torch"].as_str().unwrap().starts_with("2.13"));
    assert!(report["peak_flops"].as_f64().unwrap() > 0.0);
    for (_, _, name) in xtask::bench::MODELS {
        let eq = &report["equivalence"][name];
        assert_eq!(eq["equivalent"], true, "{name}: {eq}");
        assert_eq!(eq["parameters_ours"], eq["parameters_pytorch"], "{name}");
        assert!(eq["abs_diff"].as_f64().unwrap() < 1e-4, "{name}: {eq}");
        assert!(report["runs"][name]["ours"]["flops_per_sample"].as_f64().unwrap() > 0.0, "{name}");
        // The four sides took turns: 2 rounds (--quick), every ratio paired within a round.
        let paired = report["runs"][name]["paired"].as_array().unwrap();
        let configs: Vec<&str> = paired.iter().map(|p| p["config"].as_str().unwrap()).collect();
        assert_eq!(configs, ["end to end", "PyTorch DataLoader", "pre-loaded", "data loader", "our loader"], "{name}");
        for p in paired {
            let ratios = p["ratios"].as_array().unwrap();
            assert_eq!(ratios.len(), 2, "{name}: {p}");
            let (ours, torch) = (&p["ours"][0], &p["pytorch"][0]);
            let expected = ours.as_f64().unwrap() / torch.as_f64().unwrap();
            assert!((ratios[0].as_f64().unwrap() - expected).abs() < 1e-12, "{name}: {p}");
        }
        // Every side ran one window per round.
        for side in ["pytorch", "pytorch_dataloader"] {
            assert_eq!(report["runs"][name][side]["samples_per_s"]["n"], 2, "{name} {side}");
        }
        for config in ["ours_loader_samples_per_s", "ours_preloaded_samples_per_s"] {
            assert_eq!(report["runs"][name]["ours"][config]["n"], 2, "{name} {config}");
        }
        // The raw windows: four sides, a warm-up and two rounds each, with each window's use of the
        // machine from the same getrusage counters on both sides.
        let text = std::fs::read_to_string(out.path().join(format!("{name}_windows.jsonl"))).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let mut sides: Vec<&str> = lines.iter().map(|l| l["side"].as_str().unwrap()).collect();
        sides.dedup();
        assert_eq!((sides.len(), lines.len()), (4, 12), "{name}: {sides:?}");
        for l in &lines {
            let u = &l["window"]["usage"];
            assert!(u["wall_s"].as_f64().unwrap() > 0.0 && u["cpu_s"].as_f64().unwrap() >= 0.0, "{name}: {l}");
            assert!(u["involuntary_switches"].is_u64() && u["minor_faults"].is_u64(), "{name}: {l}");
        }
        // Our loader's overhead is the paired ratio of our two configurations, as PyTorch's is.
        let own = paired.iter().find(|p| p["config"] == "our loader").unwrap()["median"].as_f64().unwrap();
        let row = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == name && r["config"] == "ours, data loader")
            .unwrap();
        assert!((row["loader_overhead_pct"].as_f64().unwrap() - 100.0 * (1.0 - own)).abs() < 1e-9, "{row}");
    }
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4 * xtask::bench::MODELS.len());
    for modality in ["vision", "text", "speech"] {
        assert!(rows.iter().any(|r| r["modality"] == modality), "no {modality} row");
    }
    for r in rows {
        for key in ["model", "modality", "config", "samples_per_s", "vs_pytorch", "mfu_pct", "loader_overhead_pct"] {
            assert!(r.get(key).is_some(), "row lacks {key}: {r}");
        }
        assert!(r["samples_per_s"]["median"].as_f64().unwrap() > 0.0, "{r}");
        let ours = r["config"].as_str().unwrap().starts_with("ours");
        assert_eq!(r["paired"]["pairs"].as_u64(), ours.then_some(2), "{r}");
        // Every data loader, ours and PyTorch's, has a measured overhead.
        let loader = r["config"].as_str().unwrap().to_lowercase().contains("loader");
        assert_eq!(r["loader_overhead_pct"].is_number(), loader, "{r}");
    }
    for name in ["text_tiny", "text_mini", "speech_tiny"] {
        assert!(rows.iter().any(|r| r["model"] == name && r["units_per_s"].as_f64().is_some_and(|u| u > 0.0)));
    }
}

#[test]
fn quick_threads_table_pairs_every_configuration_with_the_default() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "--quick", "--threads-table", "--modality", "speech", "--out"])
        .arg(out.path())
        .status()
        .expect("xtask runs");
    assert!(status.success(), "cargo xtask bench --quick --threads-table failed");
    let rows: Vec<ssl_records::bench::ThreadRow> =
        serde_json::from_slice(&std::fs::read(out.path().join("threads.json")).unwrap()).unwrap();
    let cores = std::thread::available_parallelism().unwrap().get();
    let sizes = xtask::bench_threads::candidates(cores);
    assert_eq!(rows.len(), sizes.len() * sizes.len());
    assert_eq!(rows.iter().filter(|r| r.default).count(), 1);
    for r in &rows {
        assert_eq!((r.samples_per_s.n, r.paired.pairs), (2, 2), "{r:?}");
        assert!(r.samples_per_s.median > 0.0, "{r:?}");
        // The default against itself: every round's ratio is 1.
        if r.default {
            assert_eq!((r.vs_default, r.paired.ci_low, r.paired.ci_high), (1.0, 1.0, 1.0));
        }
    }
}
