//! The reliability campaign (issue 18), run through the built `ssl` binary as a user would.
//!
//! A generated corpus of malformed inputs (images, audio, text, IDX/CIFAR files, damaged run
//! directories): each case must end in a clear error (the expected exit code, a message naming
//! the file or flag) or in a counted skip, never in a panic, a hang or an allocation beyond
//! [`MEM_LIMIT_MB`]. Then the kill campaign: SIGKILL at random moments, `--resume`, and the loss
//! trajectory must equal the uninterrupted run's bit for bit, with no temporary file left.
//!
//! `cargo xtask test` runs the quick version (the cases marked quick, 3 kills). `cargo xtask
//! chaos` runs everything (`SSL_CHAOS=full`, `SSL_CHAOS_TRIALS=20`) and writes the table of
//! docs/src/reliability.md (`SSL_CHAOS_REPORT`).
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Peak resident memory allowed to any case (LibTorch alone takes about 250 MB).
const MEM_LIMIT_MB: f64 = 1536.0;
/// A case running longer than this is a hang.
const TIMEOUT: Duration = Duration::from_secs(240);

fn full() -> bool {
    std::env::var("SSL_CHAOS").is_ok_and(|v| v == "full")
}

/// What a case must end in.
#[derive(Clone)]
enum Expect {
    /// Exit 0 with nothing skipped.
    Accepted,
    /// Exit 0 with the bad input counted as skipped (its name in `report.json`'s `skipped`).
    Skipped(&'static str),
    /// Exit 0 with a warning naming this.
    Warned(&'static str),
    /// This exit code, and a message containing this.
    Refused(i32, &'static str),
}

impl Expect {
    fn describe(&self) -> String {
        match self {
            Expect::Accepted => "accepted".into(),
            Expect::Skipped(f) => format!("`{f}` skipped and counted"),
            Expect::Warned(w) => format!("runs, warns `{w}`"),
            Expect::Refused(c, m) => format!("exit {c}, message names `{m}`"),
        }
    }
}

struct Case {
    group: &'static str,
    name: &'static str,
    quick: bool,
    expect: Expect,
    args: Vec<String>,
}

/// What happened.
struct Observed {
    code: Option<i32>,
    signal: Option<i32>,
    secs: f64,
    peak_mb: f64,
    output: String,
    skipped: Vec<String>,
}

/// The child's peak resident memory so far in MB (`VmHWM`: per address space, so unlike
/// `ru_maxrss` it does not inherit this test process's own peak across fork).
fn high_water_mb(pid: libc::pid_t) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Run `ssl` with `args`, sampling its peak memory every 10 ms and killing it at the timeout.
fn run_ssl(args: &[String]) -> Observed {
    run_ssl_with(args, &[], None)
}

/// [`run_ssl`] with extra environment variables and, optionally, an address-space limit in bytes
/// (`RLIMIT_AS`: an allocation beyond it fails as it does on a machine out of memory).
fn run_ssl_with(args: &[String], env: &[(&str, &str)], address_space: Option<u64>) -> Observed {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let start = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssl"));
    command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    if let Some(limit) = address_space {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let lim = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: limit as libc::rlim_t };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // Reaped below by `waitpid` (polled, so the timeout can kill it; the peak memory is read from
    // /proc while it runs).
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().expect("the ssl binary runs");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    let mut peak_mb = 0f64;
    loop {
        if let Some(mb) = high_water_mb(pid) {
            peak_mb = peak_mb.max(mb);
        }
        // SAFETY: plain system call on our own child, with valid out-pointers.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if start.elapsed() > TIMEOUT {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = format!(
        "{}{}",
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let out_dir = args.iter().position(|a| a == "--out").map(|i| PathBuf::from(&args[i + 1]));
    let skipped = out_dir
        .and_then(|d| std::fs::read_to_string(d.join("report.json")).ok())
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .map(|r| r["skipped"]["items"].as_array().into_iter().flatten().map(|i| i.to_string()).collect::<Vec<String>>())
        .unwrap_or_default();
    Observed {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        secs: start.elapsed().as_secs_f64(),
        peak_mb,
        output,
        skipped,
    }
}

/// `Ok(what happened)` when the case ended as expected, `Err(why not)` otherwise.
fn judge(expect: &Expect, o: &Observed) -> Result<String, String> {
    let last = o.output.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").to_owned();
    if let Some(sig) = o.signal {
        return Err(format!("killed by signal {sig} after {:.0} s (a hang or a crash)", o.secs));
    }
    if o.code == Some(101) || o.output.contains("panicked at") {
        return Err(format!("panic: {last}"));
    }
    if o.peak_mb > MEM_LIMIT_MB {
        return Err(format!("peak memory {:.0} MB over the {MEM_LIMIT_MB:.0} MB limit", o.peak_mb));
    }
    let code = o.code.unwrap_or(-1);
    match expect {
        Expect::Accepted if code == 0 && o.skipped.is_empty() => Ok("exit 0, nothing skipped".into()),
        Expect::Skipped(f) if code == 0 => match o.skipped.iter().find(|s| s.contains(f)) {
            Some(s) => Ok(format!("exit 0, skipped: {}", s.trim_matches('"'))),
            None => Err(format!("exit 0 but `{f}` is not among the skipped: {:?}", o.skipped)),
        },
        Expect::Warned(w) if code == 0 => match o.output.lines().find(|l| l.contains("warning") && l.contains(w)) {
            Some(l) => Ok(format!("exit 0, {}", l.trim())),
            None => Err(format!("exit 0 without a warning naming `{w}`")),
        },
        Expect::Refused(c, m) if code == *c => match o.output.lines().find(|l| l.contains(m)) {
            Some(l) => Ok(format!("exit {c}: {}", l.trim())),
            None => Err(format!("exit {c} but no line names `{m}`: {last}")),
        },
        _ => Err(format!("exit {code}: {last} (skipped: {:?})", o.skipped)),
    }
}

// ------------------------------------------------------------------------------------------------
// Inputs.

fn png(path: &Path, w: u32, h: u32, seed: u8) {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 16) as u8 ^ seed, (y * 16) as u8, seed]));
    img.save(path).unwrap();
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A PNG whose header claims `w` x `h` pixels, followed by a few bytes of data.
fn lying_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00]);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut h = flate2::Crc::new();
    h.update(bytes);
    h.sum()
}

/// A vision case: a folder of 8 good 16x16 images plus `bad` (name, bytes), and a labeled folder.
fn vision_case(root: &Path, name: &str, bad: Option<(&str, Vec<u8>)>) -> Vec<String> {
    let dir = root.join(name);
    for i in 0..8 {
        png(&dir.join(format!("data/good-{i}.png")).tap_parent(), 16, 16, i as u8 * 20);
    }
    if let Some((file, bytes)) = bad {
        write(&dir.join("data").join(file), &bytes);
    }
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            for i in 0..3 {
                png(
                    &dir.join(format!("labeled/{split}/{class}/{i}.png")).tap_parent(),
                    16,
                    16,
                    i * 40 + (class == "b") as u8 * 128,
                );
            }
        }
    }
    let mut args =
        strings(&["pretrain-vision", "--image-size", "16", "--steps", "2", "--batch-size", "4", "--width", "4"]);
    args.extend(strings(&["--data", &dir.join("data").display().to_string()]));
    args.extend(strings(&["--labeled", &dir.join("labeled").display().to_string()]));
    args.extend(tiny_eval(&dir));
    args
}

/// The smallest evaluation: 2 labels per class, one seed, the linear probe.
const TINY_EVAL: [&str; 6] = ["--labels-per-class", "2", "--seeds", "1", "--eval", "linear"];

fn tiny_eval(dir: &Path) -> Vec<String> {
    let mut a = strings(&TINY_EVAL);
    a.extend(strings(&["--threads", "1", "--out", &dir.join("run").display().to_string()]));
    a
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

trait TapParent {
    fn tap_parent(self) -> Self;
}
impl TapParent for PathBuf {
    /// Create the parent folder, return the path.
    fn tap_parent(self) -> Self {
        std::fs::create_dir_all(self.parent().unwrap()).unwrap();
        self
    }
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn cmyk_jpeg() -> Vec<u8> {
    let (w, h) = (16u16, 16u16);
    let data: Vec<u8> =
        (0..w as usize * h as usize).flat_map(|i| [(i % 256) as u8, 40, 200, (255 - i % 256) as u8]).collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90).encode(&data, w, h, jpeg_encoder::ColorType::Cmyk).unwrap();
    out
}

fn wav(spec: hound::WavSpec, secs: f64, f: f64) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        let n = (spec.sample_rate as f64 * secs) as usize;
        for i in 0..n {
            let v = 0.4 * (2.0 * std::f64::consts::PI * f * i as f64 / spec.sample_rate as f64).sin();
            for _ in 0..spec.channels {
                match (spec.sample_format, spec.bits_per_sample) {
                    (hound::SampleFormat::Float, _) => w.write_sample(v as f32).unwrap(),
                    (_, 8) => w.write_sample((v * 127.0) as i8).unwrap(),
                    (_, 16) => w.write_sample((v * 32767.0) as i16).unwrap(),
                    (_, b) => w.write_sample((v * ((1i64 << (b - 1)) - 1) as f64) as i32).unwrap(),
                }
            }
        }
        w.finalize().unwrap();
    }
    out.into_inner()
}

fn pcm16() -> hound::WavSpec {
    hound::WavSpec { channels: 1, sample_rate: 16000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int }
}

/// A speech case: 6 good clips plus `bad`, and a labeled folder of two tones.
fn speech_case(root: &Path, name: &str, bad: Option<(&str, Vec<u8>)>) -> Vec<String> {
    let dir = root.join(name);
    for i in 0..6 {
        write(&dir.join(format!("data/good-{i}.wav")), &wav(pcm16(), 0.7, 200.0 + 50.0 * i as f64));
    }
    if let Some((file, bytes)) = bad {
        write(&dir.join("data").join(file), &bytes);
    }
    for split in ["train", "test"] {
        for (class, f) in [("low", 220.0), ("high", 880.0)] {
            for i in 0..3 {
                write(
                    &dir.join(format!("labeled/{split}/{class}/{i}.wav")),
                    &wav(pcm16(), 0.6, f * (1.0 + 0.03 * i as f64)),
                );
            }
        }
    }
    let mut args = strings(&["pretrain-speech", "--steps", "2", "--batch-size", "2", "--crop-seconds", "0.5"]);
    args.extend(strings(&["--data", &dir.join("data").display().to_string()]));
    args.extend(strings(&["--labeled", &dir.join("labeled").display().to_string()]));
    args.extend(tiny_eval(&dir));
    args
}

fn corpus_lines() -> String {
    let moby =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/text/corpus/moby_dick.txt"))
            .unwrap();
    moby.lines().filter(|l| !l.trim().is_empty()).take(400).collect::<Vec<_>>().join("\n") + "\n"
}

/// A text case: a corpus file (good lines plus `bad`) and an optional labeled CSV.
fn text_case(root: &Path, name: &str, corpus_name: &str, bad: &[u8], labeled: Option<&str>) -> Vec<String> {
    let dir = root.join(name);
    let mut body = corpus_lines().into_bytes();
    body.extend(bad);
    body.extend(corpus_lines().into_bytes());
    write(&dir.join(corpus_name), &body);
    let mut args =
        strings(&["pretrain-text", "--steps", "2", "--batch-size", "4", "--max-len", "32", "--vocab-size", "400"]);
    args.extend(strings(&["--corpus", &dir.join(corpus_name).display().to_string()]));
    if let Some(csv) = labeled {
        write(&dir.join("labeled.csv"), csv.as_bytes());
        args.extend(strings(&["--labeled", &dir.join("labeled.csv").display().to_string()]));
    }
    args.extend(tiny_eval(&dir));
    args
}

fn labeled_csv(classes: &[&str], per_class: usize) -> String {
    let mut s = String::from("text,label\n");
    for (c, label) in classes.iter().enumerate() {
        for i in 0..per_class {
            let _ = writeln!(
                s,
                "\"a review number {i} of kind {c}, {}\",{label}",
                if c == 0 { "dull and slow" } else { "bright and warm" }
            );
        }
    }
    s
}

/// A finished tiny vision run at `dir`, for the damaged-run cases.
fn finished_run(dir: &Path) -> Vec<String> {
    let mut args =
        strings(&["pretrain-vision", "--steps", "4", "--batch-size", "8", "--width", "4", "--max-images", "64"]);
    args.extend(strings(&["--max-test", "20", "--checkpoint-every", "2"]));
    args.extend(tiny_eval(dir));
    let o = run_ssl(&args);
    assert_eq!(o.code, Some(0), "the run to damage: {}", o.output);
    args
}

fn newest_checkpoint(run: &Path) -> PathBuf {
    let mut all: Vec<PathBuf> =
        std::fs::read_dir(run.join("checkpoints")).unwrap().flatten().map(|e| e.path()).collect();
    all.sort();
    all.pop().unwrap()
}

fn with(args: &[String], extra: &[&str]) -> Vec<String> {
    let mut a = args.to_vec();
    a.extend(strings(extra));
    a
}

fn replace_flag(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut a = args.to_vec();
    if let Some(i) = a.iter().position(|x| x == flag) {
        a[i + 1] = value.into();
    }
    a
}

fn cases(root: &Path) -> Vec<Case> {
    let mut c = Vec::new();
    let mut add = |group, name, quick, expect, args| c.push(Case { group, name, quick, expect, args });
    // Images.
    let good = encode(image::DynamicImage::ImageRgb8(image::RgbImage::new(16, 16)), image::ImageFormat::Png);
    let jpg = encode(image::DynamicImage::ImageRgb8(image::RgbImage::new(16, 16)), image::ImageFormat::Jpeg);
    let rgba = image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(16, 16, image::Rgba([10, 200, 30, 128])));
    let l16 = image::DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(16, 16, image::Luma([40000u16])));
    let rgba16 = image::DynamicImage::ImageRgba16(image::ImageBuffer::from_pixel(
        16,
        16,
        image::Rgba([1u16, 30000, 65535, 65535]),
    ));
    let png = image::ImageFormat::Png;
    // (case, quick, the skipped file or None for accepted, file name, bytes)
    type ImageCase = (&'static str, bool, Option<&'static str>, &'static str, Vec<u8>);
    let images: Vec<ImageCase> = vec![
        ("truncated PNG", true, Some("cut.png"), "cut.png", good[..good.len() / 2].to_vec()),
        ("truncated JPEG", false, Some("cut.jpg"), "cut.jpg", jpg[..jpg.len() / 3].to_vec()),
        ("zero-length file", false, Some("empty.png"), "empty.png", Vec::new()),
        ("WAV bytes named .png", false, Some("sound.png"), "sound.png", wav(pcm16(), 0.1, 440.0)),
        (
            "PNG header claiming 100000 x 100000 (decompression bomb)",
            true,
            Some("bomb.png"),
            "bomb.png",
            lying_png(100_000, 100_000),
        ),
        ("PNG header claiming 0 x 0", false, Some("zero.png"), "zero.png", lying_png(0, 0)),
        ("RGBA PNG", false, None, "rgba.png", encode(rgba, png)),
        ("16-bit grey PNG", true, None, "l16.png", encode(l16, png)),
        ("16-bit RGBA PNG", false, None, "rgba16.png", encode(rgba16, png)),
        ("CMYK JPEG", true, None, "cmyk.jpg", cmyk_jpeg()),
    ];
    for (name, quick, skipped, file, bytes) in images {
        let expect = skipped.map_or(Expect::Accepted, Expect::Skipped);
        add("image", name, quick, expect, vision_case(root, file, Some((file, bytes))));
    }
    // IDX and CIFAR files.
    let idx = root.join("idx");
    let mut bad_magic = vec![0u8, 0, 0x09, 3];
    bad_magic.extend([0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]);
    bad_magic.extend(vec![0u8; 2 * 28 * 28]);
    write(&idx.join("magic/train-images-idx3-ubyte"), &bad_magic);
    let mut short = vec![0u8, 0, 0x08, 3];
    short.extend([0, 0, 0x03, 0xe8, 0, 0, 0, 28, 0, 0, 0, 28]); // 1000 images claimed
    short.extend(vec![0u8; 2 * 28 * 28]);
    write(&idx.join("short/train-images-idx3-ubyte"), &short);
    write(&idx.join("cifar/data_batch_1.bin"), &vec![3u8; 3073 * 2 + 100]);
    for (name, quick, dir, format, mention) in [
        ("IDX file with a wrong magic number", true, "magic", "idx", "train-images-idx3-ubyte"),
        ("IDX header claiming more images than the file holds", false, "short", "idx", "train-images-idx3-ubyte"),
        ("CIFAR batch whose size is not a multiple of a record", false, "cifar", "cifar-binary", "data_batch_1.bin"),
    ] {
        let mut args =
            strings(&["pretrain-vision", "--steps", "2", "--batch-size", "4", "--width", "4", "--data-format", format]);
        args.extend(strings(&["--data", &idx.join(dir).display().to_string()]));
        args.extend(tiny_eval(&idx.join(dir)));
        add("idx/cifar", name, quick, Expect::Refused(1, mention), args);
    }
    // Audio.
    let clip = wav(pcm16(), 0.5, 300.0);
    add(
        "audio",
        "truncated header",
        true,
        Expect::Skipped("head.wav"),
        speech_case(root, "wav-head", Some(("head.wav", clip[..20].to_vec()))),
    );
    // Headers that lie: a data chunk longer than the file, a zero sample rate, zero channels.
    let half = clip[..clip.len() / 2].to_vec();
    let patched = |at: usize, bytes: &[u8]| {
        let mut c = clip.clone();
        c[at..at + bytes.len()].copy_from_slice(bytes);
        c
    };
    for (name, file, bytes) in [
        ("data chunk longer than the file", "long.wav", half),
        ("zero sample rate", "rate0.wav", patched(24, &0u32.to_le_bytes())),
        ("zero channels", "ch0.wav", patched(22, &0u16.to_le_bytes())),
    ] {
        add("audio", name, false, Expect::Skipped(file), speech_case(root, file, Some((file, bytes))));
    }
    for (name, quick, bits, fmt, channels) in [
        ("8-bit PCM", false, 8u16, hound::SampleFormat::Int, 1u16),
        ("24-bit PCM", true, 24, hound::SampleFormat::Int, 1),
        ("32-bit PCM", false, 32, hound::SampleFormat::Int, 1),
        ("32-bit float", false, 32, hound::SampleFormat::Float, 1),
        ("3 channels", true, 16, hound::SampleFormat::Int, 3),
    ] {
        let spec = hound::WavSpec { channels, sample_rate: 22050, bits_per_sample: bits, sample_format: fmt };
        add("audio", name, quick, Expect::Accepted, speech_case(root, name, Some(("x.wav", wav(spec, 0.6, 500.0)))));
    }
    let one = wav(pcm16(), 1.0 / 16000.0, 300.0);
    add(
        "audio",
        "1-sample file",
        false,
        Expect::Skipped("one.wav"),
        speech_case(root, "wav-one", Some(("one.wav", one))),
    );
    let mut flac = b"fLaC".to_vec();
    flac.extend((0..200u32).map(|i| (i * 7919 % 251) as u8));
    add(
        "audio",
        "garbage FLAC",
        true,
        Expect::Skipped("junk.flac"),
        with(&speech_case(root, "flac", Some(("junk.flac", flac))), &["--data-format", "flac-folder"]),
    );
    // Text.
    add(
        "text",
        "invalid UTF-8 line",
        true,
        Expect::Skipped("corpus.txt"),
        text_case(root, "utf8", "corpus.txt", b"caf\xe9 \xff\xfe broken\n", None),
    );
    add(
        "text",
        "NUL bytes in a line",
        false,
        Expect::Accepted,
        text_case(root, "nul", "corpus.txt", b"a line with \0 nul \0 bytes\n", None),
    );
    if full() {
        let huge = vec![b'x'; 100 << 20];
        add(
            "text",
            "a 100 MB line with no newline",
            false,
            Expect::Skipped("corpus.txt"),
            text_case(root, "huge", "corpus.txt", &huge, None),
        );
    }
    add("text", "broken JSONL record", false, Expect::Skipped("corpus.jsonl"), {
        let dir = root.join("jsonl");
        let mut body = String::new();
        for l in corpus_lines().lines() {
            let _ = writeln!(body, "{}", serde_json::json!({ "text": l }));
        }
        body.push_str("{\"text\": \"unterminated\n");
        write(&dir.join("corpus.jsonl"), body.as_bytes());
        let mut args =
            strings(&["pretrain-text", "--steps", "2", "--batch-size", "4", "--max-len", "32", "--vocab-size", "400"]);
        args.extend(strings(&["--corpus", &dir.join("corpus.jsonl").display().to_string()]));
        args.extend(tiny_eval(&dir));
        args
    });
    add(
        "text",
        "labeled CSV without the label column",
        true,
        Expect::Refused(1, "no column `label`"),
        text_case(root, "csv-col", "corpus.txt", b"", Some("text\nhello\nworld\n")),
    );
    add(
        "text",
        "labeled set with one class",
        true,
        Expect::Refused(1, "at least two classes"),
        text_case(root, "one-class", "corpus.txt", b"", Some(&labeled_csv(&["pos"], 8))),
    );
    add("text", "fewer examples than labels per class", false, Expect::Warned("fewer than"), {
        let mut csv = labeled_csv(&["pos", "neg"], 6);
        csv.push_str("\"one more\",pos\n");
        replace_flag(&text_case(root, "few", "corpus.txt", b"", Some(&csv)), "--labels-per-class", "8")
    });
    // Every pretraining image unreadable: an error within seconds, never a loader that spins.
    add("images", "every pretraining image truncated", true, Expect::Refused(1, "no readable images"), {
        let args = vision_case(root, "all-bad", None);
        let cut = &good[..good.len() / 2];
        for i in 0..8 {
            write(&root.join(format!("all-bad/data/good-{i}.png")), cut);
        }
        args
    });
    // A configuration that passes validation but not LibTorch: a ViT whose 4-pixel patches do
    // not tile 30-pixel images fails in its first step's reshape.
    add(
        "config",
        "MAE on 30 x 30 images (patches of 4 do not tile them)",
        true,
        Expect::Refused(1, "failed in LibTorch"),
        {
            let mut a = strings(&["pretrain-vision", "--method", "mae", "--image-size", "30", "--steps", "2"]);
            a.extend(strings(&[
                "--max-images",
                "64",
                "--batch-size",
                "8",
                "--max-test",
                "20",
                "--labels-per-class",
                "1",
            ]));
            a.extend(strings(&["--seeds", "1", "--eval", "linear", "--threads", "1"]));
            with(&a, &["--out", &root.join("mae-30").display().to_string()])
        },
    );
    // Damaged run directories (one finished run per case: each case damages its own).
    let damaged = |name: &str| {
        let dir = root.join(name);
        let args = finished_run(&dir);
        (dir.join("run"), args)
    };
    let (run, args) = damaged("run-safetensors");
    let model = newest_checkpoint(&run).join("model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    add("run dir", "truncated model.safetensors, --eval-only", true, Expect::Refused(1, "model.safetensors"), {
        let checkpoint = newest_checkpoint(&run).display().to_string();
        let mut a = strings(&["pretrain-vision", "--eval-only", "--checkpoint", &checkpoint, "--max-test", "20"]);
        a.extend(strings(&TINY_EVAL));
        with(&a, &["--out", &run.join("eval").display().to_string()])
    });
    let _ = args;
    let (run, args) = damaged("run-state");
    std::fs::write(newest_checkpoint(&run).join("state.json"), b"{ not json").unwrap();
    add(
        "run dir",
        "state.json that does not parse, --resume (falls back to the older checkpoint)",
        true,
        Expect::Warned("state.json"),
        with(&replace_flag(&args, "--steps", "6"), &["--resume"]),
    );
    let (run, _) = damaged("run-modality");
    add("run dir", "--eval-only on a run of another modality", false, Expect::Refused(2, "is a vision run"), {
        strings(&[
            "pretrain-text",
            "--eval-only",
            "--checkpoint",
            &run.display().to_string(),
            "--out",
            &root.join("x").display().to_string(),
        ])
    });
    let (_, args) = damaged("run-shapes");
    add(
        "run dir",
        "--resume with a different --width (checkpoint shapes differ)",
        false,
        Expect::Refused(1, "another configuration"),
        with(&replace_flag(&replace_flag(&args, "--width", "8"), "--steps", "6"), &["--resume"]),
    );
    c
}

#[test]
fn every_malformed_input_ends_in_a_clear_error_or_a_counted_skip() {
    let root = tempfile::tempdir().unwrap();
    let all = cases(root.path());
    let chosen: Vec<&Case> = all.iter().filter(|c| full() || c.quick).collect();
    let mut table =
        String::from("| input | case | expected | observed | peak memory | wall | |\n|---|---|---|---|---|---|---|\n");
    let mut failures = Vec::new();
    for case in chosen {
        let o = run_ssl(&case.args);
        let verdict = judge(&case.expect, &o);
        let (ok, what) = match &verdict {
            Ok(w) => ("ok", w.clone()),
            Err(w) => ("**FAIL**", w.clone()),
        };
        eprintln!("[{ok}] {} / {}: {what} ({:.0} MB, {:.1} s)", case.group, case.name, o.peak_mb, o.secs);
        let what = what.replace('|', "\\|").replace(root.path().to_str().unwrap(), "…");
        let what: String = what.chars().take(160).collect();
        let _ = writeln!(
            table,
            "| {} | {} | {} | {what} | {:.0} MB | {:.1} s | {ok} |",
            case.group,
            case.name,
            case.expect.describe(),
            o.peak_mb,
            o.secs
        );
        if verdict.is_err() {
            failures.push(format!("{} / {}: {}", case.group, case.name, what));
        }
    }
    if let Some(p) = std::env::var_os("SSL_CHAOS_REPORT") {
        std::fs::File::create(&p).and_then(|mut f| f.write_all(table.as_bytes())).unwrap();
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// SIGKILL at seeded random moments of a tiny vision run (checkpoints every step), then
/// `--resume`: the loss trajectory must equal the uninterrupted run's bit for bit, every
/// checkpoint must read, and no temporary file may remain.
#[test]
fn kill_9_at_random_moments_then_resume_reproduces_the_run() {
    let trials: usize = std::env::var("SSL_CHAOS_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let root = tempfile::tempdir().unwrap();
    let args = |out: &Path| {
        let mut a =
            strings(&["pretrain-vision", "--steps", "30", "--batch-size", "8", "--width", "4", "--max-images", "64"]);
        a.extend(strings(&["--max-test", "20", "--checkpoint-every", "1", "--labels-per-class", "1", "--seeds", "1"]));
        a.extend(strings(&["--eval", "linear", "--threads", "1", "--out", &out.display().to_string()]));
        a
    };
    let losses = |dir: &Path| -> Vec<(u64, u64)> {
        ssl_core::trainer::read_metrics(dir).iter().map(|m| (m.step, m.loss.to_bits())).collect()
    };
    let reference = root.path().join("reference");
    let start = Instant::now();
    let o = run_ssl(&args(&reference));
    assert_eq!(o.code, Some(0), "{}", o.output);
    let span = start.elapsed().as_millis() as u64;
    let want = losses(&reference);
    assert!(want.len() >= 3 && want.last().map(|l| l.0) == Some(30), "{want:?}");
    let mut state =
        0x9E37_79B9_7F4A_7C15u64 ^ std::env::var("SSL_CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for trial in 0..trials {
        let out = root.path().join(format!("trial-{trial}"));
        let at = next() % span.max(1);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssl"))
            .args(args(&out))
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .env("OMP_NUM_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(at));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let had = std::fs::read_dir(out.join("checkpoints")).map(|d| d.count()).unwrap_or(0);
        // A run killed before its first checkpoint starts again; any later one resumes.
        let resume = if had > 0 { with(&args(&out), &["--resume"]) } else { args(&out) };
        let o = run_ssl(&resume);
        assert_eq!(o.code, Some(0), "trial {trial} (killed at {at} ms): {}", o.output);
        assert_eq!(losses(&out), want, "trial {trial} (killed at {at} ms): the resumed losses differ");
        let tmp: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(tmp.is_empty(), "trial {trial}: temporary checkpoint files left");
        eprintln!(
            "trial {trial}: killed at {at} ms of {span}, {had} checkpoint(s) on disk, resumed to identical losses"
        );
    }
}

/// The arguments of a tiny vision run into `out` (30 steps, a checkpoint every `every` steps).
fn tiny_vision(out: &Path, every: &str) -> Vec<String> {
    let mut a =
        strings(&["pretrain-vision", "--steps", "30", "--batch-size", "8", "--width", "4", "--max-images", "64"]);
    a.extend(strings(&["--max-test", "20", "--checkpoint-every", every, "--labels-per-class", "1", "--seeds", "1"]));
    a.extend(strings(&["--eval", "linear", "--threads", "1", "--out", &out.display().to_string()]));
    a
}

/// Running out of memory, as a user meets it through the binary. A real LibTorch allocation
/// failure in the middle of step 12 (`SSL_INJECT_OOM_AT_STEP`, after the forward pass): exit 1,
/// no panic, a message naming the step and the batch size with a smaller batch to try, the
/// state before the step saved although the last periodic checkpoint is step 10, and `--resume`
/// ending bit for bit as the uninterrupted run. Then the evaluation's feature batches failing to
/// fit: smaller ones, and the run completes. Then an oversized `--batch-size` under an
/// address-space limit: exit 1 with the same kind of message, never exit 101. Then the memory
/// check before the first step refusing a plan over `--max-memory`.
#[test]
fn out_of_memory_is_an_error_with_the_state_kept_and_resume_reproduces_the_run() {
    let root = tempfile::tempdir().unwrap();
    let losses = |dir: &Path| -> Vec<(u64, u64)> {
        ssl_core::trainer::read_metrics(dir).iter().map(|m| (m.step, m.loss.to_bits())).collect()
    };
    let reference = root.path().join("reference");
    let o = run_ssl(&tiny_vision(&reference, "10"));
    assert_eq!(o.code, Some(0), "{}", o.output);

    let out = root.path().join("oom");
    let o = run_ssl_with(&tiny_vision(&out, "10"), &[("SSL_INJECT_OOM_AT_STEP", "12")], None);
    assert_eq!(o.code, Some(1), "{}", o.output);
    assert!(!o.output.contains("panicked"), "{}", o.output);
    for part in ["out of memory at step 12 (--batch-size 8", "--batch-size 4 --grad-accum 2", "state before step 12"] {
        assert!(o.output.contains(part), "the message names `{part}`: {}", o.output);
    }
    assert!(out.join("checkpoints/step-000000012").is_dir(), "the state before the failed step is saved");
    let o = run_ssl(&with(&tiny_vision(&out, "10"), &["--resume"]));
    assert_eq!(o.code, Some(0), "{}", o.output);
    assert_eq!(losses(&out), losses(&reference), "resumed before the failed step: the same losses bit for bit");

    // The evaluation's feature batches do not fit (a real allocation failure for any batch over
    // 16 rows): it goes on with smaller ones and the run completes.
    let small = root.path().join("small-batches");
    let o = run_ssl_with(&tiny_vision(&small, "10"), &[("SSL_INJECT_OOM_FEATURE_BATCH_OVER", "16")], None);
    assert_eq!(o.code, Some(0), "{}", o.output);
    assert!(o.output.contains("did not fit in memory; trying batches of 10"), "{}", o.output);

    // 2048 images of 96 x 96 through a ResNet of width 64: tens of GB of activations.
    let big = root.path().join("big");
    let mut args = tiny_vision(&big, "10");
    for (flag, value) in [("--batch-size", "2048"), ("--width", "64"), ("--max-images", "2048")] {
        args = replace_flag(&args, flag, value);
    }
    let o = run_ssl_with(&with(&args, &["--image-size", "96", "--no-memory-check"]), &[], Some(6 << 30));
    assert_eq!(o.code, Some(1), "{}", o.output);
    assert!(!o.output.contains("panicked"), "{}", o.output);
    assert!(o.output.contains("out of memory at step 0 (--batch-size 2048"), "{}", o.output);

    // The memory check refuses a plan over --max-memory before any step, naming the budget.
    let refused = root.path().join("refused");
    let o = run_ssl(&with(&tiny_vision(&refused, "10"), &["--max-memory", "200M"]));
    assert_eq!(o.code, Some(1), "{}", o.output);
    for part in ["the plan will not fit in memory: at --batch-size 8", "0.20 GiB (--max-memory)", "no batch size fits"]
    {
        assert!(o.output.contains(part), "the message names `{part}`: {}", o.output);
    }
    assert!(!refused.join("checkpoints").exists(), "nothing was trained");
}
