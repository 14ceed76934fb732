//! `--profile N`: N training steps recorded with LibTorch's profiler (Kineto, through the C++
//! layer in [`crate::kernels`]), written as a Chrome/Perfetto trace (`profile/trace.json`, open it
//! in `ui.perfetto.dev` or `chrome://tracing`) and a table of the operators that took the time
//! (`profile/top-ops.md`: self time, calls, the most common input shapes).
//!
//! The same reader summarises a trace `torch.profiler` wrote (`export_chrome_trace`), so ours and
//! PyTorch's can be put side by side op by op ([`compare_markdown`], `ssl trace A --against B`).
//!
//! Self time is an operator's time minus the time of the operators it called, nested by time on
//! its thread, as `torch.profiler`'s `key_averages` computes it.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let trace = dir.path().join("trace.json");
//! std::fs::write(&trace, r#"{"traceEvents": [
//!   {"ph": "X", "cat": "cpu_op", "name": "aten::linear", "pid": 1, "tid": 1, "ts": 0, "dur": 10},
//!   {"ph": "X", "cat": "cpu_op", "name": "aten::addmm", "pid": 1, "tid": 1, "ts": 2, "dur": 7,
//!    "args": {"Input Dims": [[4], [8, 16], [16, 4]]}}
//! ]}"#).unwrap();
//! let s = ssl_core::profile::summarize(&trace).unwrap();
//! assert_eq!(s.cpu_ops[0].name, "aten::addmm");
//! assert_eq!((s.cpu_ops[0].self_us, s.cpu_ops[1].self_us), (7.0, 3.0));
//! ```
use crate::error::{CoreError, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One operator (or CUDA kernel), summed over its calls.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRow {
    pub name: String,
    pub calls: u64,
    /// Microseconds in the operator itself, its callees left out.
    pub self_us: f64,
    /// Microseconds from its start to its end, callees included.
    pub total_us: f64,
    /// The input shapes it was called with most often (empty when shapes were not recorded).
    pub shapes: String,
}

/// What a trace holds, operators sorted by self time (largest first).
#[derive(Debug, Clone, Default)]
pub struct TraceSummary {
    /// CPU-side operators (`cpu_op` events).
    pub cpu_ops: Vec<OpRow>,
    /// CUDA kernels (`kernel` events), when the trace has them.
    pub kernels: Vec<OpRow>,
    /// From the first operator's start to the last one's end, in microseconds.
    pub span_us: f64,
}

struct Event {
    name: String,
    track: (String, String),
    ts: f64,
    dur: f64,
    shapes: String,
}

fn events_of(trace: &serde_json::Value, cat: &str) -> Vec<Event> {
    let Some(all) = trace.get("traceEvents").and_then(|e| e.as_array()) else { return Vec::new() };
    all.iter()
        .filter(|e| e.get("ph").and_then(|p| p.as_str()) == Some("X"))
        .filter(|e| e.get("cat").and_then(|c| c.as_str()) == Some(cat))
        .filter_map(|e| {
            Some(Event {
                name: e.get("name")?.as_str()?.to_string(),
                track: (e.get("pid").map(|v| v.to_string()).unwrap_or_default(), e.get("tid")?.to_string()),
                ts: e.get("ts")?.as_f64()?,
                dur: e.get("dur")?.as_f64()?,
                shapes: e.pointer("/args/Input Dims").map(|v| v.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Sum `events` by name; with `nested`, an event's self time leaves out the events inside it on
/// its track.
fn rows(mut events: Vec<Event>, nested: bool) -> Vec<OpRow> {
    events.sort_by(|a, b| a.track.cmp(&b.track).then(a.ts.total_cmp(&b.ts)).then(b.dur.total_cmp(&a.dur)));
    let mut own: Vec<f64> = events.iter().map(|e| e.dur).collect();
    if nested {
        let mut stack: Vec<usize> = Vec::new();
        for i in 0..events.len() {
            while let Some(&top) = stack.last() {
                let (t, e) = (&events[top], &events[i]);
                if t.track != e.track || t.ts + t.dur <= e.ts {
                    stack.pop();
                } else {
                    break;
                }
            }
            if let Some(&parent) = stack.last() {
                own[parent] -= events[i].dur;
            }
            stack.push(i);
        }
    }
    let mut by_name: HashMap<&str, (OpRow, HashMap<&str, u64>)> = HashMap::new();
    for (e, own) in events.iter().zip(own) {
        let (row, shapes) = by_name.entry(&e.name).or_insert_with(|| {
            let row = OpRow { name: e.name.clone(), calls: 0, self_us: 0.0, total_us: 0.0, shapes: String::new() };
            (row, HashMap::new())
        });
        row.calls += 1;
        row.self_us += own.max(0.0);
        row.total_us += e.dur;
        *shapes.entry(&e.shapes).or_default() += 1;
    }
    let mut out: Vec<OpRow> = by_name
        .into_values()
        .map(|(mut row, shapes)| {
            let mut s: Vec<(&str, u64)> = shapes.into_iter().collect();
            s.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            row.shapes = s.first().map(|(k, _)| shorten(k, 80)).unwrap_or_default();
            row
        })
        .collect();
    out.sort_by(|a, b| b.self_us.total_cmp(&a.self_us).then(a.name.cmp(&b.name)));
    out
}

/// `s` cut to `max` characters, with an ellipsis when cut (a fused optimizer's input shapes list
/// every parameter).
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Read a Chrome trace (ours or `torch.profiler`'s) and sum it by operator.
pub fn summarize(trace: &Path) -> Result<TraceSummary> {
    let bytes = std::fs::read(trace).map_err(|e| CoreError::io(trace, e))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| CoreError::json(trace, e))?;
    let cpu = events_of(&v, "cpu_op");
    if cpu.is_empty() {
        return Err(CoreError::InvalidArgument(format!(
            "{}: no operator events (`cpu_op`) in the trace; is it a LibTorch/PyTorch profiler trace?",
            trace.display()
        )));
    }
    let start = cpu.iter().map(|e| e.ts).fold(f64::INFINITY, f64::min);
    let end = cpu.iter().map(|e| e.ts + e.dur).fold(f64::NEG_INFINITY, f64::max);
    Ok(TraceSummary { cpu_ops: rows(cpu, true), kernels: rows(events_of(&v, "kernel"), false), span_us: end - start })
}

fn total_self(rows: &[OpRow]) -> f64 {
    rows.iter().map(|r| r.self_us).sum::<f64>().max(1e-9)
}

/// The `top` operators by self time (and, when the trace has them, CUDA kernels), as Markdown;
/// `steps` divides times into per-step figures.
pub fn top_ops_markdown(s: &TraceSummary, top: usize, steps: u64) -> String {
    let per = steps.max(1) as f64;
    let mut out = format!(
        "{} steps recorded, {:.1} ms per step from the first operator to the last.\n\n",
        steps,
        s.span_us / 1000.0 / per
    );
    for (title, rows) in [("operator", &s.cpu_ops), ("CUDA kernel", &s.kernels)] {
        if rows.is_empty() {
            continue;
        }
        let all = total_self(rows);
        out.push_str(&format!(
            "| {title} | calls/step | self ms/step | self % | total ms/step | input shapes (most common) |\n"
        ));
        out.push_str("|---|---:|---:|---:|---:|---|\n");
        for r in rows.iter().take(top) {
            out.push_str(&format!(
                "| `{}` | {:.1} | {:.3} | {:.1} | {:.3} | {} |\n",
                r.name,
                r.calls as f64 / per,
                r.self_us / 1000.0 / per,
                100.0 * r.self_us / all,
                r.total_us / 1000.0 / per,
                r.shapes
            ));
        }
        out.push('\n');
    }
    out
}

/// Two traces side by side (`a` and `b` with `a_steps` and `b_steps` steps in them): the `top`
/// operators by the larger self time per step, with each side's calls and self time per step and
/// the difference, and the per-step spans.
pub fn compare_markdown(a: &TraceSummary, a_steps: u64, b: &TraceSummary, b_steps: u64, top: usize) -> String {
    let (pa, pb) = (a_steps.max(1) as f64, b_steps.max(1) as f64);
    let find = |rows: &[OpRow], n: &str| rows.iter().find(|r| r.name == n).cloned();
    let mut names: Vec<&str> = a.cpu_ops.iter().chain(&b.cpu_ops).map(|r| r.name.as_str()).collect();
    names.sort();
    names.dedup();
    let per_step = |r: &Option<OpRow>, p: f64| r.as_ref().map(|r| (r.calls as f64 / p, r.self_us / 1000.0 / p));
    let mut lines: Vec<(f64, String)> = names
        .into_iter()
        .map(|n| {
            let (x, y) = (per_step(&find(&a.cpu_ops, n), pa), per_step(&find(&b.cpu_ops, n), pb));
            let (xa, ya) = (x.map_or(0.0, |v| v.1), y.map_or(0.0, |v| v.1));
            let cell = |v: Option<(f64, f64)>| v.map_or("- | -".to_string(), |(c, t)| format!("{c:.1} | {t:.3}"));
            (xa.max(ya), format!("| `{n}` | {} | {} | {:+.3} |\n", cell(x), cell(y), xa - ya))
        })
        .collect();
    lines.sort_by(|p, q| q.0.total_cmp(&p.0));
    let mut out = format!(
        "Per step: A {:.2} ms from the first operator to the last, B {:.2} ms; self time of all operators: A {:.2} ms, B {:.2} ms.\n\n",
        a.span_us / 1000.0 / pa,
        b.span_us / 1000.0 / pb,
        total_self(&a.cpu_ops) / 1000.0 / pa,
        total_self(&b.cpu_ops) / 1000.0 / pb
    );
    out.push_str("| operator | A calls/step | A self ms/step | B calls/step | B self ms/step | A - B ms |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for (_, l) in lines.into_iter().take(top) {
        out.push_str(&l);
    }
    out
}

/// Records steps `[first, first + count)` of a training loop and writes `dir/trace.json` and
/// `dir/top-ops.md` when the last of them ends (or when the loop ends first).
pub struct StepProfiler {
    dir: PathBuf,
    first: u64,
    count: u64,
    cuda: bool,
    recording: Option<u64>,
}

impl StepProfiler {
    /// Record `count` steps of a loop that starts at step `start` and ends before `end`, after up
    /// to 2 warm-up steps (fewer when the loop is short), into `dir`.
    pub fn new(dir: impl Into<PathBuf>, start: u64, end: u64, count: u64, cuda: bool) -> Self {
        let warmup = end.saturating_sub(start).saturating_sub(count).min(2);
        Self { dir: dir.into(), first: start + warmup, count, cuda, recording: None }
    }

    /// Call before step `step` runs.
    pub fn before(&mut self, step: u64) -> Result<()> {
        if self.count > 0 && step == self.first && self.recording.is_none() {
            crate::kernels::profiler_start(true, self.cuda)?;
            self.recording = Some(step);
        }
        Ok(())
    }

    /// Call after step `step` ran; `last` when the loop ends with it.
    pub fn after(&mut self, step: u64, last: bool) -> Result<()> {
        match self.recording {
            Some(first) if step + 1 >= first + self.count || last => self.finish(step + 1 - first),
            _ => Ok(()),
        }
    }

    fn finish(&mut self, steps: u64) -> Result<()> {
        self.recording = None;
        std::fs::create_dir_all(&self.dir).map_err(|e| CoreError::io(&self.dir, e))?;
        let trace = self.dir.join("trace.json");
        crate::kernels::profiler_stop(&trace)?;
        let summary = summarize(&trace)?;
        let table = top_ops_markdown(&summary, 25, steps);
        let md = self.dir.join("top-ops.md");
        std::fs::write(&md, format!("# Profile: steps {}..{}\n\n{table}", self.first, self.first + steps))
            .map_err(|e| CoreError::io(&md, e))?;
        eprintln!("==> profile of {steps} steps: {} and {}", trace.display(), md.display());
        for line in table.lines().take(12) {
            eprintln!("    {line}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_time_leaves_out_callees_on_the_same_thread_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.json");
        std::fs::write(
            &p,
            r#"{"traceEvents": [
              {"ph": "X", "cat": "cpu_op", "name": "outer", "pid": 1, "tid": 1, "ts": 0, "dur": 100},
              {"ph": "X", "cat": "cpu_op", "name": "inner", "pid": 1, "tid": 1, "ts": 10, "dur": 30},
              {"ph": "X", "cat": "cpu_op", "name": "inner", "pid": 1, "tid": 1, "ts": 50, "dur": 20},
              {"ph": "X", "cat": "cpu_op", "name": "leaf", "pid": 1, "tid": 1, "ts": 55, "dur": 5},
              {"ph": "X", "cat": "cpu_op", "name": "other", "pid": 1, "tid": 2, "ts": 20, "dur": 40},
              {"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": 20, "dur": 4},
              {"ph": "i", "cat": "cpu_op", "name": "marker", "pid": 1, "tid": 1, "ts": 5}
            ]}"#,
        )
        .unwrap();
        let s = summarize(&p).unwrap();
        let get = |n: &str| s.cpu_ops.iter().find(|r| r.name == n).unwrap().clone();
        assert_eq!((get("outer").self_us, get("outer").total_us), (50.0, 100.0));
        assert_eq!((get("inner").calls, get("inner").self_us), (2, 45.0));
        assert_eq!(get("other").self_us, 40.0, "another thread is not a callee");
        assert_eq!(s.cpu_ops[0].name, "outer");
        assert_eq!(s.span_us, 100.0);
        assert_eq!(s.kernels.len(), 1);
        let md = top_ops_markdown(&s, 3, 2);
        assert!(md.contains("| `outer` | 0.5 | 0.025 |"), "{md}");
        let cmp = compare_markdown(&s, 1, &s, 2, 10);
        assert!(cmp.contains("| `outer` | 1.0 | 0.050 | 0.5 | 0.025 | +0.025 |"), "{cmp}");
        std::fs::write(&p, r#"{"traceEvents": []}"#).unwrap();
        assert!(summarize(&p).unwrap_err().to_string().contains("no operator events"));
    }
}
