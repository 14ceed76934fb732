//! Streaming one file from a source (local mirror directory or HTTP URL) into a `.part` file,
//! hashing while writing, resuming with HTTP `Range` requests and retrying transient errors.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::checksum::{Digests, StreamHasher};

/// Where a file can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file (a file of a mirror directory).
    File(PathBuf),
    /// An HTTP(S) URL.
    Url(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Url(url) => f.write_str(url),
        }
    }
}

/// A `--mirror` value: a directory holding files by name, or a base URL to which the name is
/// appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mirror {
    Dir(PathBuf),
    Url(String),
}

impl Mirror {
    /// `http://…` / `https://…` is a URL mirror, `file://…` or anything else a directory.
    pub fn parse(spec: &str) -> Mirror {
        if spec.starts_with("http://") || spec.starts_with("https://") {
            Mirror::Url(spec.to_string())
        } else if let Some(path) = spec.strip_prefix("file://") {
            Mirror::Dir(PathBuf::from(path))
        } else {
            Mirror::Dir(PathBuf::from(spec))
        }
    }

    /// Where this mirror would hold `file_name`.
    pub fn source_for(&self, file_name: &str) -> Source {
        match self {
            Mirror::Dir(dir) => Source::File(dir.join(file_name)),
            Mirror::Url(base) => Source::Url(format!("{}/{file_name}", base.trim_end_matches('/'))),
        }
    }
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mirror::Dir(path) => write!(f, "{}", path.display()),
            Mirror::Url(url) => f.write_str(url),
        }
    }
}

/// Bounded exponential backoff for transient errors.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per source, including the first one.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    /// Maximum silence while reading a response.
    pub read_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(16),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A failed fetch. `transient` errors are retried (and leave the `.part` file for resuming).
#[derive(Debug)]
pub struct FetchError {
    pub message: String,
    pub transient: bool,
}

impl FetchError {
    fn fatal(message: impl Into<String>) -> Self {
        FetchError { message: message.into(), transient: false }
    }

    fn transient(message: impl Into<String>) -> Self {
        FetchError { message: message.into(), transient: true }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}

/// Fetches files into `.part` files.
pub struct Fetcher {
    agent: ureq::Agent,
    retry: RetryPolicy,
    progress: bool,
}

impl Fetcher {
    /// `progress`: draw a progress bar (only ever drawn when stderr is a terminal).
    pub fn new(retry: RetryPolicy, progress: bool) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(retry.connect_timeout)
            .timeout_read(retry.read_timeout)
            .user_agent(concat!("ssl-toolkit-xtask/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher { agent, retry, progress: progress && io::stderr().is_terminal() }
    }

    /// Fetches `source` into `part`, returning the digests of the complete `.part` file.
    /// For a URL an existing `.part` is resumed; a local file is always copied from the start.
    pub fn fetch(
        &self,
        source: &Source,
        part: &Path,
        expected_size: Option<u64>,
        label: &str,
    ) -> Result<Digests, FetchError> {
        match source {
            Source::File(path) => self.copy_local(path, part, label),
            Source::Url(url) => self.fetch_url(url, part, expected_size, label),
        }
    }

    fn copy_local(&self, path: &Path, part: &Path, label: &str) -> Result<Digests, FetchError> {
        let io_err = |what: &str, e: io::Error| FetchError::fatal(format!("{what}: {e}"));
        let mut input = File::open(path).map_err(|e| io_err(&format!("cannot open {}", path.display()), e))?;
        let total = input.metadata().map(|m| m.len()).ok();
        let mut output = File::create(part).map_err(|e| io_err(&format!("cannot create {}", part.display()), e))?;
        let bar = self.bar(label, total, 0);
        let mut hasher = StreamHasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = input.read(&mut buf).map_err(|e| io_err(&format!("reading {}", path.display()), e))?;
            if n == 0 {
                break;
            }
            output.write_all(&buf[..n]).map_err(|e| io_err(&format!("writing {}", part.display()), e))?;
            hasher.update(&buf[..n]);
            bar.inc(n as u64);
        }
        output.flush().map_err(|e| io_err(&format!("writing {}", part.display()), e))?;
        bar.finish_and_clear();
        Ok(hasher.finish())
    }

    fn fetch_url(
        &self,
        url: &str,
        part: &Path,
        expected_size: Option<u64>,
        label: &str,
    ) -> Result<Digests, FetchError> {
        let mut backoff = self.retry.initial_backoff;
        let mut attempt = 1;
        loop {
            match self.try_url(url, part, expected_size, label) {
                Ok(digests) => return Ok(digests),
                Err(err) if err.transient && attempt < self.retry.max_attempts => {
                    eprintln!(
                        "  {label}: {err}; retrying in {:.1}s (attempt {}/{})",
                        backoff.as_secs_f64(),
                        attempt + 1,
                        self.retry.max_attempts
                    );
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.retry.max_backoff);
                    attempt += 1;
                }
                Err(err) if err.transient => {
                    return Err(FetchError::transient(format!("{err} (gave up after {attempt} attempts)")))
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One HTTP request. Resumes from the `.part` file's length when there is one.
    fn try_url(&self, url: &str, part: &Path, expected_size: Option<u64>, label: &str) -> Result<Digests, FetchError> {
        let io_err = |what: String, e: io::Error| FetchError::fatal(format!("{what}: {e}"));
        let mut offset = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if let Some(size) = expected_size {
            if offset == size {
                // Complete from an earlier run: nothing to request.
                return hash_prefix(part, offset)
                    .map(StreamHasher::finish)
                    .map_err(|e| io_err(format!("reading {}", part.display()), e));
            }
            if offset > size {
                offset = 0;
            }
        }

        let mut request = self.agent.get(url);
        if offset > 0 {
            request = request.set("Range", &format!("bytes={offset}-"));
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::Status(416, _)) if offset > 0 => {
                // Our partial file does not fit the server's file: start over.
                let _ = fs::remove_file(part);
                return Err(FetchError::transient(format!(
                    "HTTP 416 (range not satisfiable) for {url}; restarting from zero"
                )));
            }
            Err(ureq::Error::Status(code, response)) => {
                let message = format!("HTTP {code} {} for {url}", response.status_text());
                return Err(FetchError { message, transient: code >= 500 || code == 408 || code == 429 });
            }
            Err(ureq::Error::Transport(transport)) => return Err(transport_error(url, &transport)),
        };

        let resumed = match response.status() {
            206 if offset > 0 => {
                let start = response.header("Content-Range").and_then(content_range_start);
                if start != Some(offset) {
                    let _ = fs::remove_file(part);
                    return Err(FetchError::transient(format!(
                        "{url} answered a range request with an unexpected Content-Range; restarting from zero"
                    )));
                }
                true
            }
            200..=299 => false,
            code => return Err(FetchError::fatal(format!("HTTP {code} {} for {url}", response.status_text()))),
        };

        let (mut file, mut hasher) = if resumed {
            let hasher = hash_prefix(part, offset).map_err(|e| io_err(format!("reading {}", part.display()), e))?;
            let mut file = OpenOptions::new()
                .write(true)
                .open(part)
                .map_err(|e| io_err(format!("opening {}", part.display()), e))?;
            file.set_len(offset)
                .and_then(|_| file.seek(SeekFrom::Start(offset)))
                .map_err(|e| io_err(format!("seeking {}", part.display()), e))?;
            (file, hasher)
        } else {
            offset = 0;
            let file = File::create(part).map_err(|e| io_err(format!("creating {}", part.display()), e))?;
            (file, StreamHasher::new())
        };

        let remaining: Option<u64> = response.header("Content-Length").and_then(|v| v.trim().parse().ok());
        let total = remaining.map(|r| r + offset).or(expected_size);
        let bar = self.bar(label, total, offset);
        let mut reader = response.into_reader();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = file.flush();
                    bar.abandon();
                    return Err(FetchError::transient(format!(
                        "connection to {url} lost after {} bytes: {e}",
                        hasher.len()
                    )));
                }
            };
            file.write_all(&buf[..n]).map_err(|e| io_err(format!("writing {}", part.display()), e))?;
            hasher.update(&buf[..n]);
            bar.inc(n as u64);
        }
        file.flush().map_err(|e| io_err(format!("writing {}", part.display()), e))?;
        bar.finish_and_clear();
        if let Some(remaining) = remaining {
            if hasher.len() < offset + remaining {
                return Err(FetchError::transient(format!(
                    "connection to {url} closed after {} of {} bytes",
                    hasher.len(),
                    offset + remaining
                )));
            }
        }
        Ok(hasher.finish())
    }

    fn bar(&self, label: &str, total: Option<u64>, position: u64) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        let template = if total.is_some() {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
        } else {
            "{msg} {bytes} {bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        bar.set_position(position);
        bar
    }
}

/// Hashes the first `len` bytes of a file.
fn hash_prefix(path: &Path, len: u64) -> io::Result<StreamHasher> {
    let mut hasher = StreamHasher::new();
    hasher.update_from(&mut File::open(path)?.take(len))?;
    if hasher.len() != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "partial file shrank while reading"));
    }
    Ok(hasher)
}

/// `bytes 100-199/200` -> 100.
fn content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = rest.split_once('-')?;
    start.trim().parse().ok()
}

fn transport_error(url: &str, transport: &ureq::Transport) -> FetchError {
    use ureq::ErrorKind;
    let detail = transport
        .message()
        .map(str::to_string)
        .or_else(|| std::error::Error::source(transport).map(|source| source.to_string()))
        .unwrap_or_else(|| transport.kind().to_string());
    match transport.kind() {
        ErrorKind::ConnectionFailed => {
            FetchError::fatal(format!("cannot connect to {url} (connection refused or failed): {detail}"))
        }
        ErrorKind::Dns => FetchError::fatal(format!("cannot resolve host of {url}: {detail}")),
        ErrorKind::InvalidUrl | ErrorKind::UnknownScheme | ErrorKind::InsecureRequestHttpsOnly => {
            FetchError::fatal(format!("invalid URL {url}: {detail}"))
        }
        ErrorKind::TooManyRedirects
        | ErrorKind::InvalidProxyUrl
        | ErrorKind::ProxyConnect
        | ErrorKind::ProxyUnauthorized => FetchError::fatal(format!("{url}: {detail}")),
        // Io (reset, timeout), BadStatus, BadHeader, HTTP, …: worth another try.
        _ => FetchError::transient(format!("transfer error for {url}: {detail}")),
    }
}
