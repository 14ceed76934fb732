//! An event file written by `EventWriter` loads in TensorBoard's own reader (`EventAccumulator`)
//! with the same tags, steps and values.
//!
//! Needs a Python with `tensorboard`, named by `SSL_PYTHON` (`cargo xtask test` sets it and
//! installs the pinned tensorboard). Without it the test fails: it is never skipped silently.
use ssl_records::tensorboard::{read_scalars, EventWriter};

#[test]
fn event_file_loads_in_tensorboard() {
    let written: Vec<(&str, i64, f64)> = vec![
        ("train/loss", 1, 2.2894),
        ("train/lr", 1, 1e-4),
        ("train/loss", 2, 1.75),
        ("train/lr", 2, 2e-4),
        ("train/loss", 3, 0.0),
        ("train/lr", 3, 3e-4),
        ("eval/linear_10", 3, 0.4375),
        ("eval/linear_10", 100, -1.5),
    ];
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("runs/tb");
    let mut w = EventWriter::create(&dir).unwrap();
    for (i, &(tag, step, value)) in written.iter().enumerate() {
        w.scalar_at(tag, step, value, 1_700_000_000.0 + i as f64).unwrap();
    }
    w.flush().unwrap();
    assert_eq!(read_scalars(w.path()).unwrap().len(), written.len());
    drop(w);

    let loaded: std::collections::BTreeMap<String, Vec<(i64, f64, f64)>> =
        serde_json::from_value(ssl_records::test_python::tensorboard_scalars(&dir)).unwrap();

    let tags: Vec<&str> = loaded.keys().map(String::as_str).collect();
    assert_eq!(tags, ["eval/linear_10", "train/loss", "train/lr"]);
    for (tag, events) in &loaded {
        let expected: Vec<(usize, &(&str, i64, f64))> =
            written.iter().enumerate().filter(|(_, w)| w.0 == tag.as_str()).collect();
        assert_eq!(events.len(), expected.len(), "{tag}: {events:?}");
        for (&(step, value, wall_time), &(i, &(_, want_step, want))) in events.iter().zip(&expected) {
            assert_eq!(step, want_step, "{tag}");
            // TensorBoard stores scalars as f32: within f32 rounding of what was written.
            assert!(
                (value - want).abs() <= f64::from(f32::EPSILON) * want.abs(),
                "{tag} step {step}: {value} vs {want}"
            );
            assert_eq!(wall_time, 1_700_000_000.0 + i as f64, "{tag} step {step}");
        }
    }
}
