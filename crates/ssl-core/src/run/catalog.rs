//! Finished runs, listed and compared: what `ssl runs` and `ssl compare` print.
use crate::error::{CoreError, Result};
use crate::eval::report::Report;
use crate::plots::{curve_chart, Curve, XAxis};
use plotters::style::{Color, Palette, Palette99};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Every run below `root` (the folder itself, its subfolders and theirs) that has a report,
/// sorted by path. Unreadable reports are listed with their error, not skipped silently.
pub fn find(root: &Path) -> Vec<(PathBuf, Result<Report>)> {
    let mut dirs = vec![root.to_path_buf()];
    for depth in 0..2 {
        let next: Vec<PathBuf> = dirs
            .iter()
            .skip(if depth == 0 { 0 } else { 1 })
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.extend(next);
    }
    let mut found: Vec<(PathBuf, Result<Report>)> = dirs
        .into_iter()
        .filter(|d| d.join("report.json").is_file())
        .map(|d| {
            let r = Report::read(&d);
            (d, r)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.dedup_by(|a, b| a.0 == b.0);
    found
}

/// The table of `ssl runs`: run, modality, method, data, steps, and the headline gain.
pub fn runs_table(root: &Path) -> String {
    let mut s = String::from("| run | modality | method | data | steps | headline |\n|---|---|---|---|---|---|\n");
    for (dir, report) in find(root) {
        let _ = match report {
            Ok(r) => {
                let data = r
                    .data
                    .pointer("/pretrain/path")
                    .or_else(|| r.data.get("pretraining").and_then(|p| p.get(0)))
                    .or_else(|| r.data.get("corpus_files").and_then(|p| p.get(0)))
                    .or_else(|| r.data.get("evaluated_run"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("-")
                    .to_owned();
                let steps = r.pretraining.as_ref().map(|p| p.steps.to_string()).unwrap_or_else(|| "eval only".into());
                let headline = match r.headline_k().and_then(|k| r.comparison(k)) {
                    Some(c) => match (&c.scratch, &c.vs_scratch) {
                        (Some(sc), Some(d)) => format!(
                            "{:+.1} points at {}/class ({:.3} vs {:.3}{})",
                            100.0 * d.mean,
                            c.labels_per_class,
                            c.pretrained.mean,
                            sc.mean,
                            if d.significant { "" } else { ", n.s." }
                        ),
                        (Some(sc), None) => format!(
                            "{:+.1} points at {}/class ({:.3} vs {:.3})",
                            100.0 * (c.pretrained.mean - sc.mean),
                            c.labels_per_class,
                            c.pretrained.mean,
                            sc.mean
                        ),
                        _ => format!("{:.3} at {}/class (no trained scratch)", c.pretrained.mean, c.labels_per_class),
                    },
                    None => "-".into(),
                };
                writeln!(s, "| {} | {} | {} | {data} | {steps} | {headline} |", dir.display(), r.modality, r.method)
            }
            Err(e) => writeln!(s, "| {} | unreadable report: {e} | | | | |", dir.display()),
        };
    }
    s
}

/// The table of `ssl compare`: for each label budget, each run's primary pretrained accuracy and
/// its trained scratch baseline; with `plot`, the
/// runs' curves overlaid (pretrained solid, scratch dashed, one colour per run).
pub fn compare(runs: &[PathBuf], plot: Option<&Path>) -> Result<String> {
    if runs.is_empty() {
        return Err(CoreError::InvalidArgument("name at least one run directory to compare".into()));
    }
    let reports: Vec<(String, Report)> =
        runs.iter().map(|d| Report::read(d).map(|r| (d.display().to_string(), r))).collect::<Result<_>>()?;
    let mut ks: Vec<usize> = reports.iter().flat_map(|(_, r)| r.labels_per_class()).collect();
    ks.sort_unstable();
    ks.dedup();
    let mut s = String::from("| labels/class |");
    let mut rule = String::from("|---|");
    for (name, r) in &reports {
        let _ = write!(s, " {name} ({}/{}) pretrained | scratch |", r.modality, r.method);
        rule.push_str("---|---|");
    }
    s.push('\n');
    s.push_str(&rule);
    s.push('\n');
    for &k in &ks {
        let _ = write!(s, "| {k} |");
        for (_, r) in &reports {
            let _ = match r.comparison(k) {
                Some(c) => write!(
                    s,
                    " {} ({}) | {} |",
                    c.pretrained.cell(),
                    c.eval.name(),
                    c.scratch.as_ref().map(|x| x.cell()).unwrap_or_else(|| "-".into())
                ),
                None => write!(s, " - | - |"),
            };
        }
        s.push('\n');
    }
    if let Some(path) = plot {
        let mut curves = Vec::new();
        for (i, (name, r)) in reports.iter().enumerate() {
            let c = Palette99::pick(i).to_rgba();
            let color = plotters::style::RGBColor(c.0, c.1, c.2);
            let pts = |scratch: bool| {
                r.evaluation
                    .comparisons
                    .iter()
                    .filter(|c| c.primary)
                    .filter_map(|c| {
                        let st = if scratch { c.scratch.as_ref()? } else { &c.pretrained };
                        Some((c.labels_per_class as f64, st.mean, st.std))
                    })
                    .collect()
            };
            curves.push(Curve { name: format!("{name} pretrained"), points: pts(false), color, dashed: false });
            curves.push(Curve { name: format!("{name} scratch"), points: pts(true), color, dashed: true });
        }
        let ticks = ks.iter().map(|&k| k as f64).collect();
        curve_chart(
            path,
            "Pretrained (primary evaluation) and trained scratch, per run",
            "labels per class (log scale)",
            "accuracy",
            &curves,
            XAxis::LogTicks(ticks),
        )?;
    }
    Ok(s)
}

/// The evidence of one run as a Markdown snippet for the docs: which machine, toolkit version and
/// commit measured it, the pretraining summary, the comparison table and the headline, all read
/// from the run's `report.json` and `config.json` (so no number is copied by hand).
pub fn evidence_table(run_dir: &Path) -> Result<String> {
    let report = Report::read(run_dir)?;
    let record = ssl_records::run::RunRecord::read(run_dir).ok();
    let m = &report.machine;
    let mut s = format!(
        "<!-- generated by `ssl report {} --table FILE` from its report.json; do not edit by hand -->\n\n",
        run_dir.display()
    );
    let _ = write!(
        s,
        "Measured on {} ({} cores, device {}), toolkit {}, commit {}.",
        m.cpu,
        m.cores,
        m.device,
        m.toolkit_version,
        record.as_ref().and_then(|r| r.git_revision.as_deref()).map(|r| &r[..r.len().min(10)]).unwrap_or("unknown")
    );
    if let Some(p) = &report.pretraining {
        let _ = write!(
            s,
            " Pretraining ({}): {} steps, {:.0} s wall, {:.0} CPU-s, final loss {:.4}.",
            report.method, p.steps, p.wall_secs, p.cpu_secs, p.final_loss
        );
    }
    let _ = write!(s, "\n\n{}\n{}\n", report.summary_table(), report.headline());
    Ok(s)
}
