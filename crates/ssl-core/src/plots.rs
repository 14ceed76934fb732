//! PNG plots of a run: accuracy against labels per class, and the pretraining loss curve.
//!
//! Text needs a TrueType font. A system DejaVu/Liberation font is used when one is found (or the
//! file named by `SSL_PLOT_FONT`); without one the plots are drawn without labels.
use crate::error::{CoreError, Result};
use crate::eval::report::Report;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn fonts_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let from_env = std::env::var("SSL_PLOT_FONT").ok();
        let paths = from_env.iter().map(String::as_str).chain(FONT_CANDIDATES.iter().copied());
        for p in paths {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn err(path: &Path, e: impl std::fmt::Display) -> CoreError {
    CoreError::Plot { path: path.display().to_string(), message: e.to_string() }
}

/// A line chart of several named series of `(x, y)` points.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_x: bool,
) -> Result<()> {
    let text = fonts_ready();
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        let x = if log_x { x.max(1e-9).log10() } else { x };
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Err(err(path, "nothing to plot"));
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15).x_label_area_size(if text { 40 } else { 5 }).y_label_area_size(if text { 60 } else { 5 });
    if text {
        builder.caption(title, ("sans-serif", 22));
    }
    let mut chart = builder.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)).map_err(|e| err(path, e))?;
    let mut mesh = chart.configure_mesh();
    if text {
        let fmt = move |v: &f64| if log_x { format!("{:.0}", 10f64.powf(*v)) } else { format!("{v:.0}") };
        mesh.x_desc(x_label).y_desc(y_label).x_label_formatter(&fmt).draw().map_err(|e| err(path, e))?;
    } else {
        mesh.disable_x_mesh().disable_y_mesh().x_labels(0).y_labels(0).draw().map_err(|e| err(path, e))?;
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> =
            points.iter().map(|&(x, y)| (if log_x { x.max(1e-9).log10() } else { x }, y)).collect();
        let s = chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2))).map_err(|e| err(path, e))?;
        if text {
            s.label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| err(path, e))?;
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(path, e))?;
    }
    root.present().map_err(|e| err(path, e))
}

/// `accuracy.png`: test accuracy against labels per class, pretrained and scratch per evaluation,
/// plus the raw baseline.
pub fn accuracy_plot(report: &Report, path: &Path) -> Result<()> {
    let mut series = Vec::new();
    let mut evals: Vec<_> = report.evaluation.evaluations.iter().map(|r| r.eval).collect();
    evals.dedup();
    for e in evals {
        let rows: Vec<_> = report.evaluation.evaluations.iter().filter(|r| r.eval == e).collect();
        series.push((
            format!("{} pretrained", e.name()),
            rows.iter().map(|r| (r.labels_per_class as f64, r.pretrained.mean)).collect(),
        ));
        series.push((
            format!("{} scratch", e.name()),
            rows.iter().map(|r| (r.labels_per_class as f64, r.scratch.mean)).collect(),
        ));
    }
    let mut raw: Vec<(f64, f64)> = report
        .evaluation
        .evaluations
        .iter()
        .filter_map(|r| r.raw_baseline.as_ref().map(|s| (r.labels_per_class as f64, s.mean)))
        .collect();
    raw.sort_by(|a, b| a.0.total_cmp(&b.0));
    raw.dedup_by(|a, b| a.0 == b.0);
    if !raw.is_empty() {
        series.push(("raw-input LR".into(), raw));
    }
    line_chart(path, "Test accuracy vs labels per class", "labels per class (log)", "accuracy", &series, true)
}

/// `loss.png`: the pretraining loss from `metrics.jsonl`.
pub fn loss_plot(run_dir: &Path, path: &Path) -> Result<()> {
    let pts: Vec<(f64, f64)> = crate::trainer::read_metrics(run_dir)
        .iter()
        .filter(|m| m.loss.is_finite())
        .map(|m| (m.step as f64, m.loss))
        .collect();
    line_chart(path, "Pretraining loss", "step", "loss", &[("loss".into(), pts)], false)
}
