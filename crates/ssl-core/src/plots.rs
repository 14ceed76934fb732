//! PNG plots of a run: accuracy against labels per class, accuracy under corruption, and the
//! pretraining loss with its learning rate.
//!
//! Text needs a TrueType font. A system DejaVu/Liberation font is used when one is found (or the
//! file named by `SSL_PLOT_FONT`); without one the plots are drawn without labels.
use crate::error::{CoreError, Result};
use crate::eval::report::Report;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
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

/// One curve of a chart: `(x, mean, std)` points, drawn solid or dashed, with a band of ± std.
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
    pub color: RGBColor,
    pub dashed: bool,
}

/// The colour of an evaluation kind, the same in every plot (pretrained solid, scratch dashed).
pub(crate) fn eval_color(name: &str) -> RGBColor {
    match name {
        "linear" => RGBColor(31, 119, 180),
        "knn" => RGBColor(44, 160, 44),
        "finetune" => RGBColor(255, 127, 14),
        _ => RGBColor(110, 110, 110),
    }
}

/// The x axis of a chart.
pub enum XAxis {
    /// Linear, ticked at exactly these values.
    Ticks(Vec<f64>),
    /// Log scale, ticked at exactly these values (the measured label counts).
    LogTicks(Vec<f64>),
}

fn x_of(axis: &XAxis, x: f64) -> f64 {
    match axis {
        XAxis::Ticks(_) => x,
        XAxis::LogTicks(_) => x.max(1e-9).log10(),
    }
}

/// A chart of curves with their seed-spread bands.
pub(crate) fn curve_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[Curve],
    axis: XAxis,
) -> Result<()> {
    let text = fonts_ready();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, m, sd) in curves.iter().flat_map(|c| c.points.iter()) {
        let x = x_of(&axis, x);
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(m - sd), y1.max(m + sd));
    }
    if x0 > x1 {
        return Err(err(path, "nothing to plot"));
    }
    let xpad = ((x1 - x0) * 0.04).max(0.05);
    let (x0, x1) = (x0 - xpad, x1 + xpad);
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15).x_label_area_size(if text { 40 } else { 5 }).y_label_area_size(if text { 60 } else { 5 });
    if text {
        builder.caption(title, ("sans-serif", 22));
    }
    let (ticks, labels): (Vec<f64>, Vec<f64>) = match &axis {
        XAxis::LogTicks(t) | XAxis::Ticks(t) => (t.iter().map(|&v| x_of(&axis, v)).collect(), t.clone()),
    };
    let (ylo, yhi) = (y0 - pad, y1 + pad);
    let mut chart = builder.build_cartesian_2d(x0..x1, ylo..yhi).map_err(|e| err(path, e))?;
    let mut mesh = chart.configure_mesh();
    // Ticks at exactly the given values (drawn below), not at plotters' round numbers.
    mesh.x_labels(0).disable_x_mesh();
    if text {
        mesh.x_desc(x_label).y_desc(y_label).draw().map_err(|e| err(path, e))?;
    } else {
        mesh.disable_y_mesh().y_labels(0).draw().map_err(|e| err(path, e))?;
    }
    for (&t, &value) in ticks.iter().zip(&labels) {
        let grid = PathElement::new(vec![(t, ylo), (t, yhi)], BLACK.mix(0.15).stroke_width(1));
        chart.draw_series(std::iter::once(grid)).map_err(|e| err(path, e))?;
        if text {
            let label = format!("{value}");
            let style = ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
            chart
                .draw_series(std::iter::once(Text::new(label, (t, ylo + 0.01 * (yhi - ylo)), style)))
                .map_err(|e| err(path, e))?;
        }
    }
    for c in curves {
        let pts: Vec<(f64, f64, f64)> = c.points.iter().map(|&(x, m, sd)| (x_of(&axis, x), m, sd)).collect();
        if pts.iter().any(|p| p.2 > 0.0) {
            let band: Vec<(f64, f64)> =
                pts.iter().map(|p| (p.0, p.1 + p.2)).chain(pts.iter().rev().map(|p| (p.0, p.1 - p.2))).collect();
            chart
                .draw_series(std::iter::once(Polygon::new(band, c.color.mix(0.12).filled())))
                .map_err(|e| err(path, e))?;
        }
        let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
        let style = c.color.stroke_width(2);
        let drawn = if c.dashed {
            chart.draw_series(DashedLineSeries::new(line.clone(), 8, 5, style)).map_err(|e| err(path, e))?
        } else {
            chart.draw_series(LineSeries::new(line.clone(), style)).map_err(|e| err(path, e))?
        };
        if text {
            let (color, dashed) = (c.color, c.dashed);
            drawn.label(c.name.as_str()).legend(move |(x, y)| {
                let seg = if dashed { vec![(x, y), (x + 7, y)] } else { vec![(x, y), (x + 20, y)] };
                PathElement::new(seg, color.stroke_width(2))
            });
        }
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, c.color.filled()))).map_err(|e| err(path, e))?;
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

/// `accuracy.png`: test accuracy against labels per class (log scale, ticked at the measured
/// counts): one colour per evaluation, pretrained solid, scratch dashed (trained from scratch for
/// fine-tuning, random frozen features for the probes), bands of ± one std over seeds, and the
/// raw-input baseline in grey.
pub fn accuracy_plot(report: &Report, path: &Path) -> Result<()> {
    let rows = &report.evaluation.evaluations;
    let mut evals: Vec<_> = rows.iter().map(|r| r.eval).collect();
    evals.sort();
    evals.dedup();
    let mut curves = Vec::new();
    for e in evals {
        let mut mine: Vec<_> = rows.iter().filter(|r| r.eval == e).collect();
        mine.sort_by_key(|r| r.labels_per_class);
        let color = eval_color(e.name());
        for (side, dashed) in [("pretrained", false), ("scratch", true)] {
            let points = mine
                .iter()
                .map(|r| {
                    let s = if dashed { &r.scratch } else { &r.pretrained };
                    (r.labels_per_class as f64, s.mean, s.std)
                })
                .collect();
            // Scratch beside a frozen evaluation is the random encoder's features, not a trained model.
            let side = if dashed && e != crate::eval::EvalKind::Finetune { "random features" } else { side };
            curves.push(Curve { name: format!("{} {side}", e.name()), points, color, dashed });
        }
    }
    let mut raw: Vec<(f64, f64, f64)> = rows
        .iter()
        .filter_map(|r| r.raw_baseline.as_ref().map(|s| (r.labels_per_class as f64, s.mean, s.std)))
        .collect();
    raw.sort_by(|a, b| a.0.total_cmp(&b.0));
    raw.dedup_by(|a, b| a.0 == b.0);
    if !raw.is_empty() {
        curves.push(Curve { name: "raw-input LR".into(), points: raw, color: eval_color("raw"), dashed: false });
    }
    let mut ks: Vec<f64> = rows.iter().map(|r| r.labels_per_class as f64).collect();
    ks.sort_by(f64::total_cmp);
    ks.dedup();
    curve_chart(
        path,
        "Test accuracy vs labels per class",
        "labels per class (log scale)",
        "accuracy",
        &curves,
        XAxis::LogTicks(ks),
    )
}

/// `robustness.png`: accuracy against corruption severity (0 = clean) for each corruption, of
/// the linear probe (or the first evaluation measured under corruption): pretrained solid,
/// scratch dashed, one colour per corruption.
pub fn robustness_plot(report: &Report, path: &Path) -> Result<()> {
    let robust = &report.evaluation.robustness;
    let Some(first) = robust.iter().find(|r| r.eval == crate::eval::EvalKind::Linear).or(robust.first()) else {
        return Err(err(path, "no robustness results"));
    };
    let (eval, k) = (first.eval, first.labels_per_class);
    let clean = report.evaluation.evaluations.iter().find(|r| r.eval == eval && r.labels_per_class == k);
    let mut names: Vec<&str> = Vec::new();
    for r in robust {
        if !names.contains(&r.corruption.as_str()) {
            names.push(r.corruption.as_str());
        }
    }
    let mut curves = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let color = RGBColor(color.0, color.1, color.2);
        for (side, dashed) in [("pretrained", false), ("scratch", true)] {
            let stat =
                |r: &crate::eval::report::RobustRow| if dashed { r.scratch.clone() } else { r.pretrained.clone() };
            let mut points: Vec<(f64, f64, f64)> = clean
                .map(|c| {
                    let s = if dashed { &c.scratch } else { &c.pretrained };
                    vec![(0.0, s.mean, 0.0)]
                })
                .unwrap_or_default();
            points.extend(
                robust
                    .iter()
                    .filter(|r| r.eval == eval && r.labels_per_class == k && r.corruption == *name)
                    // No bands here: ten curves with bands hide each other (report.json has the std).
                    .map(|r| (r.severity as f64, stat(r).mean, 0.0)),
            );
            curves.push(Curve { name: format!("{name} {side}"), points, color, dashed });
        }
    }
    let title = format!("Accuracy under corruption ({}, {k} labels per class)", eval.name());
    let mut severities: Vec<f64> = robust.iter().map(|r| r.severity as f64).collect();
    severities.push(0.0);
    severities.sort_by(f64::total_cmp);
    severities.dedup();
    curve_chart(path, &title, "severity (0 = clean)", "accuracy", &curves, XAxis::Ticks(severities))
}

/// `loss.png`: the pretraining loss from `metrics.jsonl`, with the learning rate on a second axis.
pub(crate) fn loss_plot(run_dir: &Path, path: &Path) -> Result<()> {
    let metrics = crate::sinks::read_metrics(run_dir);
    let loss: Vec<(f64, f64)> =
        metrics.iter().filter(|m| m.loss.is_finite()).map(|m| (m.step as f64, m.loss)).collect();
    let lr: Vec<(f64, f64)> = metrics.iter().map(|m| (m.step as f64, m.lr)).collect();
    if loss.is_empty() {
        return Err(err(path, "nothing to plot"));
    }
    let text = fonts_ready();
    let x1 = loss.iter().map(|p| p.0).fold(1.0, f64::max);
    let (y0, y1) = loss.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let lr_max = lr.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-12);
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .margin(15)
        .x_label_area_size(if text { 40 } else { 5 })
        .y_label_area_size(if text { 60 } else { 5 })
        .right_y_label_area_size(if text { 70 } else { 5 });
    if text {
        builder.caption("Pretraining loss and learning rate", ("sans-serif", 22));
    }
    let mut chart = builder
        .build_cartesian_2d(0f64..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(path, e))?
        .set_secondary_coord(0f64..x1, 0f64..lr_max * 1.05);
    let loss_color = eval_color("linear");
    let lr_color = eval_color("raw");
    if text {
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| err(path, e))?;
        chart
            .configure_secondary_axes()
            .y_desc("learning rate")
            .y_label_formatter(&|v| format!("{v:.1e}"))
            .draw()
            .map_err(|e| err(path, e))?;
    }
    let drawn = chart.draw_series(LineSeries::new(loss, loss_color.stroke_width(2))).map_err(|e| err(path, e))?;
    if text {
        drawn
            .label("loss")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], loss_color.stroke_width(2)));
    }
    let drawn = chart
        .draw_secondary_series(DashedLineSeries::new(lr, 8, 5, lr_color.stroke_width(2)))
        .map_err(|e| err(path, e))?;
    if text {
        drawn
            .label("learning rate (right axis)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 7, y)], lr_color.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| err(path, e))?;
    }
    root.present().map_err(|e| err(path, e))
}
