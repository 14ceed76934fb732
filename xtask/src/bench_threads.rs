//! `cargo xtask bench --threads-table`: our training throughput for every pair of intra-op
//! threads and loader threads out of 1, 2, 4, ... up to the core count, all processes alive at
//! once and taking turns window by window (one at work at a time), each configuration's windows
//! paired with the default configuration's window of the same round. It is the measurement behind
//! the defaults: LibTorch's intra-op threads (one per core) and
//! `ssl_core::trainer::loader_threads` (the cores LibTorch leaves free, at least one).
use crate::bench::{BenchArgs, Side, MODELS};
use anyhow::Result;
use ssl_records::bench::{PairedRatio, PairedSummary, Spread, ThreadRow};
use std::path::Path;
use std::process::Command;

/// 1, 2, 4, ... below `cores`, and `cores`.
pub fn candidates(cores: usize) -> Vec<usize> {
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |n| Some(n * 2)).take_while(|&n| n < cores).collect();
    v.push(cores.max(1));
    v
}

/// The default configuration on `cores` CPU cores: (intra-op threads, loader threads).
pub fn default_config(cores: usize) -> (usize, usize) {
    (cores.max(1), 1)
}

/// Run the table for the models `args` selects; writes `OUT/threads.json` and returns the rows.
pub fn run(ssl: &dyn Fn() -> Command, args: &BenchArgs, out: &Path) -> Result<Vec<ThreadRow>> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let sizes = candidates(cores);
    let configs: Vec<(usize, usize)> = sizes.iter().flat_map(|&t| sizes.iter().map(move |&l| (t, l))).collect();
    let default = default_config(cores);
    let rounds = args.windows.unwrap_or(if args.quick { 2 } else { 6 }).max(1);
    let mut rows = Vec::new();
    for &(modality, preset, name) in MODELS.iter().filter(|m| args.modality.as_deref().is_none_or(|w| w == m.0)) {
        eprintln!("==> {name}: {} thread configurations in turns, {rounds} rounds", configs.len());
        let mut sides = Vec::new();
        for &(t, l) in &configs {
            let dir = out.join("threads").join(format!("{name}_t{t}_l{l}"));
            std::fs::create_dir_all(&dir)?;
            let mut cmd = ssl();
            cmd.args(["bench", modality, "--preset", preset, "--device", &args.device, "--paired"]);
            cmd.args(["--threads", &t.to_string(), "--loader-threads", &l.to_string(), "--windows"]);
            cmd.arg((rounds + 1).to_string()).arg("--out").arg(&dir);
            if args.quick {
                cmd.arg("--quick");
            }
            if let Some(n) = args.window_steps {
                cmd.args(["--window-steps", &n.to_string()]);
            }
            let mut side = Side::spawn(&format!("ssl bench {name} --threads {t} --loader-threads {l}"), cmd)?;
            side.warm_up("loader")?; // alone
            sides.push(side);
        }
        let mut sps = vec![Vec::new(); configs.len()];
        for round in 0..rounds {
            for (i, side) in sides.iter_mut().enumerate() {
                sps[i].push(side.run_window("loader")?);
            }
            eprintln!(
                "    round {}: {}",
                round + 1,
                sps.iter().map(|s| format!("{:.0}", s[s.len() - 1])).collect::<Vec<_>>().join(" ")
            );
        }
        for side in &mut sides {
            side.say("next")?;
            side.warm_up("preloaded")?; // not part of this table, but it runs before the process ends
            side.say("next")?;
            side.finish()?;
        }
        let base = configs.iter().position(|&c| c == default).unwrap_or(0);
        for (i, &(threads, loader_threads)) in configs.iter().enumerate() {
            let p = PairedRatio::of("vs default", &sps[i], &sps[base]);
            rows.push(ThreadRow {
                model: name.to_owned(),
                threads,
                loader_threads,
                default: i == base,
                samples_per_s: Spread::of(&sps[i]),
                vs_default: p.median,
                paired: PairedSummary::from(&p),
            });
        }
    }
    std::fs::write(out.join("threads.json"), serde_json::to_vec_pretty(&rows)?)?;
    println!("{}", table(&rows));
    Ok(rows)
}

/// The printed table.
pub fn table(rows: &[ThreadRow]) -> String {
    let mut s = String::from(
        "| model | intra-op threads | loader threads | samples/s median (min-max) | vs default, paired median | interval (coverage, rounds) |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let sp = &r.samples_per_s;
        let p = &r.paired;
        s.push_str(&format!(
            "| {} | {}{} | {} | {:.0} ({:.0}-{:.0}) | {:.2}x | {:.2}-{:.2}x ({:.0}%, {}) |\n",
            r.model,
            r.threads,
            if r.default { " (default)" } else { "" },
            r.loader_threads,
            sp.median,
            sp.min,
            sp.max,
            r.vs_default,
            p.ci_low,
            p.ci_high,
            100.0 * p.ci_level,
            p.pairs
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_powers_of_two_and_the_core_count() {
        assert_eq!(candidates(1), [1]);
        assert_eq!(candidates(2), [1, 2]);
        assert_eq!(candidates(6), [1, 2, 4, 6]);
        assert_eq!(candidates(16), [1, 2, 4, 8, 16]);
    }

    #[test]
    fn the_default_matches_the_trainers_rule_on_the_cpu() {
        // LibTorch takes one intra-op thread per core; the loader gets the cores left, at least one.
        for cores in [1, 2, 8] {
            let (t, l) = default_config(cores);
            assert_eq!((t, l), (cores, cores.saturating_sub(t).max(1)));
        }
    }

    #[test]
    fn table_marks_the_default_and_its_ratio() {
        let p = PairedRatio::of("vs default", &[90.0, 110.0], &[100.0, 100.0]);
        let row = ThreadRow {
            model: "vision".into(),
            threads: 2,
            loader_threads: 1,
            default: true,
            samples_per_s: Spread::of(&[90.0, 110.0]),
            vs_default: p.median,
            paired: PairedSummary::from(&p),
        };
        let t = table(&[row]);
        assert!(t.contains("| vision | 2 (default) | 1 | 100 (90-110) | 1.00x | 0.90-1.10x (50%, 2) |"), "{t}");
    }
}
