//! Architecture checks that keep ARCHITECTURE.md true: no function of ssl-core's (outside its
//! tests) runs past 100 lines, and `Trainer::fit` stays an outline of under 40.
use std::path::Path;

/// `(lines, file, name)` of every function with a body in `src` below `dir`, test modules left
/// out. A function is its `fn` line to the closing brace at the same indentation.
fn functions(dir: &Path, out: &mut Vec<(usize, String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            functions(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let Some(rest) =
                ["pub fn ", "pub(crate) fn ", "pub(super) fn ", "fn "].iter().find_map(|p| trimmed.strip_prefix(p))
            else {
                continue;
            };
            // The signature ends at the first line ending in `{` (a body) or `;` (a declaration).
            let Some(sig_end) = (i..lines.len()).find(|&j| {
                let l = lines[j].trim_end();
                l.ends_with('{') || l.ends_with(';')
            }) else {
                continue;
            };
            if lines[sig_end].trim_end().ends_with(';') {
                continue;
            }
            let close = (sig_end + 1..lines.len()).find(|&j| {
                let l = lines[j];
                l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}')
            });
            if let Some(close) = close {
                let name = rest.split(['(', '<']).next().unwrap_or("").to_owned();
                out.push((close - i + 1, path.display().to_string(), name));
            }
        }
    }
}

#[test]
fn no_function_of_the_engine_runs_past_100_lines_and_fit_is_an_outline() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    functions(&src, &mut all);
    assert!(all.len() > 300, "the scan found {} functions: it no longer reads the sources", all.len());
    let long: Vec<_> = all.iter().filter(|(n, _, _)| *n > 100).collect();
    assert!(long.is_empty(), "functions over 100 lines (split them into parts): {long:?}");
    let fit = all.iter().find(|(_, f, name)| f.ends_with("trainer/mod.rs") && name == "fit").expect("Trainer::fit");
    assert!(fit.0 < 40, "Trainer::fit is {} lines: it should only hand off to its parts", fit.0);
}
