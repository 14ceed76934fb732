//! The commands the docs show: every `ssl ...` and `cargo xtask ...` line in a fenced block of the
//! README and the docs pages, as the argument lists a test hands to the command's own parser, so
//! that a renamed or removed flag fails CI (`ssl-cli`'s and `xtask`'s tests).
//!
//! Placeholders become parseable values: `a|b|c` its first choice, `[--flag VALUE]` its content,
//! `PATH...` its word, `<name>` the word `x` (`<modality>`: `vision`), `$VAR` the word `1` (a
//! number or a path alike); a lone `...` (more of the same flags) is dropped. Line continuations (`\`) are joined and `# comments` cut.
//!
//! ```
//! let text = "```console\ncargo xtask pretrain-vision --method rotation|mae \\\n  --data DIR   # a comment\n```\n";
//! let c = ssl_records::doc_commands::from_markdown("README.md", text);
//! assert_eq!(c[0].args, ["cargo", "xtask", "pretrain-vision", "--method", "rotation", "--data", "DIR"]);
//! ```
use std::path::{Path, PathBuf};

/// One documented command.
#[derive(Debug, Clone, PartialEq)]
pub struct DocCommand {
    /// The page and its 1-based line where the command starts.
    pub place: String,
    /// The command's words, placeholders replaced (`ssl ...` or `cargo xtask ...`).
    pub args: Vec<String>,
}

/// The commands of every page: `README.md` and `docs/src/*.md` below `root`, but the generated
/// command reference (`cli.md`, made from `--help` itself).
pub fn in_workspace(root: &Path) -> std::io::Result<Vec<DocCommand>> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs/src"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md") && !p.ends_with("cli.md"))
        .collect();
    pages.sort();
    pages.insert(0, root.join("README.md"));
    let mut out = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(&page)?;
        let name = page.strip_prefix(root).unwrap_or(&page).display().to_string();
        out.extend(from_markdown(&name, &text));
    }
    Ok(out)
}

/// The commands in the fenced blocks of one page's `text`.
pub fn from_markdown(page: &str, text: &str) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let (mut fenced, mut pending, mut start) = (false, String::new(), 0);
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            pending.clear();
            continue;
        }
        if !fenced {
            continue;
        }
        if pending.is_empty() {
            start = i + 1;
        }
        let code = cut_comment(line.trim());
        match code.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(code);
                let words: Vec<&str> = pending.split_whitespace().collect();
                if words.first() == Some(&"ssl") || words.starts_with(&["cargo", "xtask"]) {
                    out.push(DocCommand { place: format!("{page}:{start}"), args: normalise(&words) });
                }
                pending.clear();
            }
        }
    }
    out
}

/// Parse every command of `commands` that `argv` takes (it returns the argument list to parse,
/// `None` for another tool's command) with `parse` (`Err`: the parser's message). Returns how
/// many were parsed, and each failure as `page:line: `command`: the message's first line`.
pub fn parse_all<E: std::fmt::Display>(
    commands: &[DocCommand],
    argv: impl Fn(&DocCommand) -> Option<Vec<String>>,
    parse: impl Fn(&[String]) -> Result<(), E>,
) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for c in commands {
        let Some(args) = argv(c) else { continue };
        checked += 1;
        if let Err(e) = parse(&args) {
            let message = e.to_string();
            failures.push(format!("{}: `{}`: {}", c.place, args.join(" "), message.lines().next().unwrap_or("")));
        }
    }
    (checked, failures)
}

/// `line` without a trailing `# comment` (a `#` after whitespace).
fn cut_comment(line: &str) -> &str {
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(i) => line[..i].trim_end(),
        None => line,
    }
}

fn normalise(words: &[&str]) -> Vec<String> {
    words
        .iter()
        .filter(|w| **w != "..." && **w != "[" && **w != "]")
        .map(|w| {
            let w = w.trim_start_matches('[').trim_end_matches(']');
            let w = w.split('|').next().unwrap_or(w);
            let w = w.strip_suffix("...").unwrap_or(w);
            if w.starts_with('$') {
                return "1".to_owned();
            }
            // `runs/<name>`, `pretrain-<modality>`: a word in place of the angle brackets.
            let mut s = String::new();
            let mut rest = w;
            while let (Some(a), Some(b)) = (rest.find('<'), rest.find('>')) {
                if b < a {
                    break;
                }
                s.push_str(&rest[..a]);
                s.push_str(if rest[a..b].contains("modality") { "vision" } else { "x" });
                rest = &rest[b + 1..];
            }
            s.push_str(rest);
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_values_and_prose_is_left_out() {
        let page = "text ssl runs\n```sh\nssl export RUN_DIR --to DIR [--format hf|timm]\n\
                    ssl pretrain-<modality> ... --export DIR\nls runs/\n$ echo\ncargo xtask test\n```\nssl not code\n";
        let c = from_markdown("p.md", page);
        let args: Vec<Vec<String>> = c.iter().map(|c| c.args.clone()).collect();
        assert_eq!(
            args,
            [
                vec!["ssl", "export", "RUN_DIR", "--to", "DIR", "--format", "hf"],
                vec!["ssl", "pretrain-vision", "--export", "DIR"],
                vec!["cargo", "xtask", "test"],
            ]
        );
        assert_eq!(c[0].place, "p.md:3");
        let cont = from_markdown("q.md", "```\nssl pretrain-text --corpus $C \\\n  --steps 10   # note\n```\n");
        assert_eq!(cont[0].args, ["ssl", "pretrain-text", "--corpus", "1", "--steps", "10"]);
    }
}
