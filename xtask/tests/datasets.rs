//! Integration tests for `xtask::datasets`: no internet, a loopback HTTP server on 127.0.0.1
//! (port 0) serves fixture bytes generated here; everything else lives in temporary directories.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use xtask::datasets::{
    builtin_manifest_files, resolve_with, ArchiveFormat, Catalog, Dataset, FileEntry, Installer, Layout, Marker,
    Mirror, RetryPolicy, Status, StreamHasher, MARKER,
};

// ---------------------------------------------------------------------------------------------
// A tiny loopback HTTP/1.1 server: one connection at a time, `Connection: close`, stops on drop
// (or after 60 s at the latest).

#[derive(Debug, Clone)]
struct Request {
    path: String,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after this many body bytes (Content-Length still announces all).
    cut_after: Option<usize>,
}

impl Reply {
    fn ok(body: &[u8]) -> Reply {
        Reply { status: 200, headers: Vec::new(), body: body.to_vec(), cut_after: None }
    }

    fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: format!("status {status}\n").into_bytes(), cut_after: None }
    }
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

struct TestServer {
    port: u16,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// `handler(request, index)` where `index` counts requests from 0.
    fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &*handler, &log),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(2)),
                        Err(_) => break,
                    }
                }
            })
        };
        TestServer { port, log, stop, thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Request>>) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let request = Request { path, headers };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(request.clone());
        log.len() - 1
    };
    let reply = handler(&request, index);
    let mut out = stream;
    let mut head =
        format!("HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n", reply.status, reply.body.len());
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let body = match reply.cut_after {
        Some(n) => &reply.body[..n],
        None => &reply.body[..],
    };
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body);
    let _ = out.flush();
    let _ = out.shutdown(Shutdown::Both);
}

/// Serves `body` for any path, honouring `Range: bytes=N-` with 206.
fn range_reply(request: &Request, body: &[u8]) -> Reply {
    if let Some(range) = request.header("range") {
        let start: usize = range.trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
        let mut reply = Reply::ok(&body[start..]);
        reply.status = 206;
        reply.headers.push(("Content-Range".into(), format!("bytes {start}-{}/{}", body.len() - 1, body.len())));
        return reply;
    }
    Reply::ok(body)
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add((i / 7) as u8) ^ seed).collect()
}

fn sha256_md5(bytes: &[u8]) -> (String, String) {
    let mut hasher = StreamHasher::new();
    hasher.update(bytes);
    let digests = hasher.finish();
    (digests.sha256, digests.md5)
}

fn entry(name: &str, urls: Vec<String>, bytes: &[u8], archive: ArchiveFormat) -> FileEntry {
    let (sha256, md5) = sha256_md5(bytes);
    FileEntry {
        name: name.to_string(),
        urls,
        size: Some(bytes.len() as u64),
        sha256: Some(sha256),
        verified: true,
        md5: Some(md5),
        checksum_source: Some("computed by the test".to_string()),
        archive,
        alternates: Vec::new(),
    }
}

fn dataset(name: &str, modality: &str, files: Vec<FileEntry>, root: &str, expect: &[&str]) -> Dataset {
    let dataset = Dataset {
        name: name.to_string(),
        modality: modality.to_string(),
        description: "test fixture".to_string(),
        homepage: None,
        reader: "test-reader".to_string(),
        layout: Layout { root: root.to_string(), expect: expect.iter().map(|s| s.to_string()).collect() },
        files,
        licence: "test".to_string(),
        citation: "test".to_string(),
    };
    dataset.validate().expect("fixture manifest is valid");
    dataset
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
    }
}

fn installer(root: &Path, mirrors: Vec<Mirror>) -> Installer {
    Installer::with_policy(root, mirrors, fast_policy(), false)
}

/// A port on which nothing listens (bound, then released).
fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

/// Staging / old directories left in the data root.
fn leftovers(root: &Path) -> Vec<String> {
    fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".staging-") || n.contains(".old-"))
                .collect()
        })
        .unwrap_or_default()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A raw tar entry, bypassing the `tar` crate's own path checks (to build hostile archives).
fn raw_tar_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    path: &str,
    link: Option<&str>,
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    {
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

fn tar_gz(entries: &[(tar::EntryType, &str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (kind, path, link, data) in entries {
        raw_tar_entry(&mut builder, *kind, path, *link, data);
    }
    gzip(&builder.into_inner().unwrap())
}

/// Installs `archive` (a tar.gz) through a mirror directory and returns the error text.
fn install_hostile_tar(tmp: &Path, archive: &[u8]) -> String {
    let mirror = tmp.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    fs::write(mirror.join("hostile.tar.gz"), archive).unwrap();
    let ds = dataset(
        "hostile",
        "vision",
        vec![entry(
            "hostile.tar.gz",
            vec![format!("http://127.0.0.1:{}/hostile.tar.gz", refused_port())],
            archive,
            ArchiveFormat::TarGz,
        )],
        ".",
        &[],
    );
    let root = tmp.join("data");
    let err = installer(&root, vec![Mirror::Dir(mirror)]).install(&ds).expect_err("hostile archive must be refused");
    assert!(!root.join("hostile").exists(), "no dataset directory may appear");
    assert!(leftovers(&root).is_empty(), "staging left: {:?}", leftovers(&root));
    format!("{err:#}")
}

// ---------------------------------------------------------------------------------------------
// 1. A good download verifies.

#[test]
fn good_download_verifies_and_writes_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(300_000, 1);
    let served = body.clone();
    let server = TestServer::start(move |req, _| range_reply(req, &served));
    let ds = dataset(
        "good",
        "vision",
        vec![entry("blob.bin", vec![server.url("/blob.bin")], &body, ArchiveFormat::None)],
        ".",
        &["blob.bin"],
    );
    let root = tmp.path().join("data");
    let inst = installer(&root, Vec::new());
    let dir = inst.install(&ds).unwrap();

    assert_eq!(dir, root.join("good"));
    assert_eq!(fs::read(dir.join("blob.bin")).unwrap(), body);
    let marker: Marker = serde_json::from_str(&fs::read_to_string(dir.join(MARKER)).unwrap()).unwrap();
    assert_eq!(marker.dataset, "good");
    assert_eq!(marker.files[0].sha256, sha256_md5(&body).0);
    assert_eq!(inst.status(&ds), Status::Present { verified: true });
    assert!(!root.join(".downloads/good/blob.bin.part").exists());
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].path, "/blob.bin");

    // Present and verified: a second install does not touch the network.
    inst.install(&ds).unwrap();
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn gzip_single_file_is_decompressed() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = payload(50_000, 2);
    let gz = gzip(&raw);
    let served = gz.clone();
    let server = TestServer::start(move |req, _| range_reply(req, &served));
    let ds = dataset(
        "gz",
        "vision",
        vec![entry(
            "train-images-idx3-ubyte.gz",
            vec![server.url("/train-images-idx3-ubyte.gz")],
            &gz,
            ArchiveFormat::GzipSingleFile,
        )],
        ".",
        &["train-images-idx3-ubyte"],
    );
    let root = tmp.path().join("data");
    let dir = installer(&root, Vec::new()).install(&ds).unwrap();
    assert_eq!(fs::read(dir.join("train-images-idx3-ubyte")).unwrap(), raw);
    // The archive itself is dropped once extracted.
    assert!(!root.join(".downloads/gz/train-images-idx3-ubyte.gz").exists());
}

#[test]
fn tar_gz_and_zip_extract_into_the_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tar_gz(&[
        (tar::EntryType::Directory, "cifar/", None, b""),
        (tar::EntryType::Regular, "cifar/a.bin", None, b"aaaa"),
        (tar::EntryType::Regular, "./cifar/b.bin", None, b"bb"),
        (tar::EntryType::Link, "cifar/c.bin", Some("cifar/a.bin"), b""),
        (tar::EntryType::Symlink, "cifar/d.bin", Some("b.bin"), b""),
    ]);
    let mut zip_bytes = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut zip_bytes);
        let options = zip::write::FileOptions::default();
        zip.start_file("wikitext/wiki.train.raw", options).unwrap();
        zip.write_all(b"hello\nworld\n").unwrap();
        zip.finish().unwrap();
    }
    let zip_bytes = zip_bytes.into_inner();
    let mirror = tmp.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    fs::write(mirror.join("data.tar.gz"), &tar).unwrap();
    fs::write(mirror.join("text.zip"), &zip_bytes).unwrap();
    let nowhere = format!("http://127.0.0.1:{}/x", refused_port());
    let ds = dataset(
        "archives",
        "vision",
        vec![
            entry("data.tar.gz", vec![nowhere.clone()], &tar, ArchiveFormat::TarGz),
            entry("text.zip", vec![nowhere], &zip_bytes, ArchiveFormat::Zip),
        ],
        "cifar",
        &["cifar/a.bin", "cifar/c.bin", "wikitext/wiki.train.raw"],
    );
    let root = tmp.path().join("data");
    let inst = installer(&root, vec![Mirror::Dir(mirror)]);
    let dir = inst.install(&ds).unwrap();
    assert_eq!(fs::read(dir.join("cifar/a.bin")).unwrap(), b"aaaa");
    assert_eq!(fs::read(dir.join("cifar/b.bin")).unwrap(), b"bb");
    assert_eq!(fs::read(dir.join("cifar/c.bin")).unwrap(), b"aaaa");
    assert_eq!(fs::read(dir.join("cifar/d.bin")).unwrap(), b"bb");
    assert_eq!(fs::read(dir.join("wikitext/wiki.train.raw")).unwrap(), b"hello\nworld\n");
    assert_eq!(inst.reader_path(&ds), root.join("archives").join("cifar"));
}

// ---------------------------------------------------------------------------------------------
// 2. A wrong hash is rejected and leaves nothing behind.

#[test]
fn wrong_hash_is_rejected_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(100_000, 3);
    let served = body.clone();
    let server = TestServer::start(move |req, _| range_reply(req, &served));
    let mut file = entry("blob.bin", vec![server.url("/blob.bin")], &body, ArchiveFormat::None);
    let (wrong_sha, _) = sha256_md5(b"something else");
    file.sha256 = Some(wrong_sha.clone());
    let ds = dataset("bad", "vision", vec![file], ".", &[]);
    let root = tmp.path().join("data");
    let err = format!("{:#}", installer(&root, Vec::new()).install(&ds).unwrap_err());

    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains(&wrong_sha), "expected hash in: {err}");
    assert!(err.contains(&sha256_md5(&body).0), "actual hash in: {err}");
    assert!(err.contains(&server.url("/blob.bin")), "{err}");
    assert!(!root.join("bad").exists());
    assert!(!root.join(".downloads/bad/blob.bin").exists());
    assert!(!root.join(".downloads/bad/blob.bin.part").exists());
}

// ---------------------------------------------------------------------------------------------
// 3. An interrupted download resumes with a Range request.

#[test]
fn cut_off_download_resumes_with_range_request() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(400_000, 4);
    let half = body.len() / 2;
    let served = body.clone();
    let server = TestServer::start(move |req, index| {
        if index == 0 {
            // First attempt: the connection dies halfway through.
            let mut reply = Reply::ok(&served);
            reply.cut_after = Some(half);
            reply
        } else {
            range_reply(req, &served)
        }
    });
    let ds = dataset(
        "resume",
        "vision",
        vec![entry("blob.bin", vec![server.url("/blob.bin")], &body, ArchiveFormat::None)],
        ".",
        &["blob.bin"],
    );
    let root = tmp.path().join("data");
    let dir = installer(&root, Vec::new()).install(&ds).unwrap();

    assert_eq!(fs::read(dir.join("blob.bin")).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].header("range"), None);
    assert_eq!(requests[1].header("range"), Some(format!("bytes={half}-").as_str()));
}

#[test]
fn existing_part_file_is_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(200_000, 5);
    let third = body.len() / 3;
    let served = body.clone();
    let server = TestServer::start(move |req, _| range_reply(req, &served));
    let ds = dataset(
        "part",
        "vision",
        vec![entry("blob.bin", vec![server.url("/blob.bin")], &body, ArchiveFormat::None)],
        ".",
        &[],
    );
    let root = tmp.path().join("data");
    let downloads = root.join(".downloads/part");
    fs::create_dir_all(&downloads).unwrap();
    fs::write(downloads.join("blob.bin.part"), &body[..third]).unwrap();

    let dir = installer(&root, Vec::new()).install(&ds).unwrap();
    assert_eq!(fs::read(dir.join("blob.bin")).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("range"), Some(format!("bytes={third}-").as_str()));
}

#[test]
fn corrupt_part_file_is_discarded_and_download_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(120_000, 6);
    let served = body.clone();
    let server = TestServer::start(move |req, _| range_reply(req, &served));
    let ds = dataset(
        "corrupt",
        "vision",
        vec![entry("blob.bin", vec![server.url("/blob.bin")], &body, ArchiveFormat::None)],
        ".",
        &[],
    );
    let root = tmp.path().join("data");
    let downloads = root.join(".downloads/corrupt");
    fs::create_dir_all(&downloads).unwrap();
    fs::write(downloads.join("blob.bin.part"), vec![0u8; 1000]).unwrap();

    let dir = installer(&root, Vec::new()).install(&ds).unwrap();
    assert_eq!(fs::read(dir.join("blob.bin")).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("range"), Some("bytes=1000-"));
    assert_eq!(requests[1].header("range"), None);
}

#[test]
fn transient_server_errors_are_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(10_000, 7);
    let served = body.clone();
    let server =
        TestServer::start(move |req, index| if index < 2 { Reply::status(503) } else { range_reply(req, &served) });
    let ds = dataset(
        "flaky",
        "vision",
        vec![entry("blob.bin", vec![server.url("/blob.bin")], &body, ArchiveFormat::None)],
        ".",
        &[],
    );
    let dir = installer(&tmp.path().join("data"), Vec::new()).install(&ds).unwrap();
    assert_eq!(fs::read(dir.join("blob.bin")).unwrap(), body);
    assert_eq!(server.requests().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// 4. Hostile archives are refused and nothing is written outside.

#[test]
fn tar_with_parent_dir_entry_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tar_gz(&[
        (tar::EntryType::Regular, "ok.txt", None, b"fine"),
        (tar::EntryType::Regular, "../evil", None, b"pwned"),
    ]);
    let err = install_hostile_tar(tmp.path(), &archive);
    assert!(err.contains("refusing archive entry") && err.contains(".."), "{err}");
    assert!(!tmp.path().join("data/evil").exists());
    assert!(!tmp.path().join("evil").exists());

    let archive = tar_gz(&[(tar::EntryType::Regular, "/abs-evil", None, b"pwned")]);
    let err = install_hostile_tar(tmp.path(), &archive);
    assert!(err.contains("absolute path"), "{err}");
}

#[test]
fn tar_with_escaping_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();

    // A symlink pointing out of the dataset directory, then a file written "through" it.
    let archive = tar_gz(&[
        (tar::EntryType::Symlink, "link", Some("../../outside"), b""),
        (tar::EntryType::Regular, "link/pwned", None, b"pwned"),
    ]);
    let err = install_hostile_tar(tmp.path(), &archive);
    assert!(err.contains("escapes the destination"), "{err}");

    // Absolute symlink target.
    let target = outside.join("abs");
    let archive = tar_gz(&[(tar::EntryType::Symlink, "abs", Some(target.to_str().unwrap()), b"")]);
    let err = install_hostile_tar(tmp.path(), &archive);
    assert!(err.contains("absolute target"), "{err}");

    // A chain that only escapes once resolved: d/l -> .. (inside), d/m -> l/.. (outside).
    let archive = tar_gz(&[
        (tar::EntryType::Directory, "d/", None, b""),
        (tar::EntryType::Symlink, "d/l", Some(".."), b""),
        (tar::EntryType::Symlink, "d/m", Some("l/.."), b""),
    ]);
    let err = install_hostile_tar(tmp.path(), &archive);
    assert!(err.contains("escapes the destination"), "{err}");

    // A hard link to a file outside.
    let archive = tar_gz(&[(tar::EntryType::Link, "hard", Some("../../outside/x"), b"")]);
    let err = install_hostile_tar(tmp.path(), &archive);
    assert!(err.contains("refusing hard link"), "{err}");

    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "nothing written outside");
}

#[test]
fn zip_with_parent_dir_entry_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut bytes);
        zip.start_file("../evil.txt", zip::write::FileOptions::default()).unwrap();
        zip.write_all(b"pwned").unwrap();
        zip.finish().unwrap();
    }
    let bytes = bytes.into_inner();
    let mirror = tmp.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    fs::write(mirror.join("evil.zip"), &bytes).unwrap();
    let ds = dataset(
        "evilzip",
        "text",
        vec![entry(
            "evil.zip",
            vec![format!("http://127.0.0.1:{}/evil.zip", refused_port())],
            &bytes,
            ArchiveFormat::Zip,
        )],
        ".",
        &[],
    );
    let root = tmp.path().join("data");
    let err = format!("{:#}", installer(&root, vec![Mirror::Dir(mirror)]).install(&ds).unwrap_err());
    assert!(err.contains("refusing archive entry"), "{err}");
    assert!(!root.join("evil.txt").exists());
    assert!(!root.join("evilzip").exists());
}

/// Installs `bytes` (an archive of `format`) through a mirror directory with an extraction limit
/// of `limit` bytes and returns the error text (the install must fail and leave nothing behind).
fn install_hostile(tmp: &Path, name: &str, bytes: &[u8], format: ArchiveFormat, limit: u64) -> String {
    let mirror = tmp.join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    fs::write(mirror.join(name), bytes).unwrap();
    let url = format!("http://127.0.0.1:{}/{name}", refused_port());
    let ds = dataset("hostile", "vision", vec![entry(name, vec![url], bytes, format)], ".", &[]);
    let root = tmp.join("data");
    let mut inst = installer(&root, vec![Mirror::Dir(mirror)]);
    inst.max_extracted_bytes = limit;
    let err = inst.install(&ds).expect_err("hostile archive must be refused");
    assert!(!root.join("hostile").exists(), "no dataset directory may appear");
    assert!(leftovers(&root).is_empty(), "staging left: {:?}", leftovers(&root));
    format!("{err:#}")
}

#[test]
fn zip_with_escaping_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut bytes);
        zip.add_symlink("link", "../../outside", zip::write::FileOptions::default()).unwrap();
        zip.finish().unwrap();
    }
    let err = install_hostile(tmp.path(), "link.zip", &bytes.into_inner(), ArchiveFormat::Zip, u64::MAX);
    assert!(err.contains("escapes the destination"), "{err}");
}

/// Decompression bombs: a 4 MiB run of zeros compresses to a few KiB; with a 1 MiB limit the
/// extraction stops with an error naming the entry, for tar.gz, zip and a single gzip file.
#[test]
fn archives_that_expand_past_the_limit_are_refused() {
    let zeros = vec![0u8; 4 << 20];
    let tmp = tempfile::tempdir().unwrap();
    let tar = tar_gz(&[
        (tar::EntryType::Regular, "small.bin", None, b"ok"),
        (tar::EntryType::Regular, "bomb.bin", None, &zeros),
    ]);
    assert!(tar.len() < 64 << 10, "the bomb is small: {} bytes", tar.len());
    let err = install_hostile(tmp.path(), "bomb.tar.gz", &tar, ArchiveFormat::TarGz, 1 << 20);
    assert!(err.contains("bomb.bin") && err.contains("expands past the limit"), "{err}");

    let mut bytes = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut bytes);
        let opts = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("bomb.bin", opts).unwrap();
        zip.write_all(&zeros).unwrap();
        zip.finish().unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let err = install_hostile(tmp.path(), "bomb.zip", &bytes.into_inner(), ArchiveFormat::Zip, 1 << 20);
    assert!(err.contains("bomb.bin") && err.contains("expands past the limit"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let err = install_hostile(tmp.path(), "bomb.bin.gz", &gzip(&zeros), ArchiveFormat::GzipSingleFile, 1 << 20);
    assert!(err.contains("expands past the limit"), "{err}");

    // The same archive within the limit installs.
    let tmp = tempfile::tempdir().unwrap();
    let mirror = tmp.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    fs::write(mirror.join("bomb.tar.gz"), &tar).unwrap();
    let url = format!("http://127.0.0.1:{}/bomb.tar.gz", refused_port());
    let ds = dataset("fine", "vision", vec![entry("bomb.tar.gz", vec![url], &tar, ArchiveFormat::TarGz)], ".", &[]);
    let mut inst = installer(&tmp.path().join("data"), vec![Mirror::Dir(mirror)]);
    inst.max_extracted_bytes = 8 << 20;
    let dir = inst.install(&ds).unwrap();
    assert_eq!(fs::metadata(dir.join("bomb.bin")).unwrap().len(), 4 << 20);
}

// ---------------------------------------------------------------------------------------------
// 5. Mirrors come before the network.

#[test]
fn mirror_directory_is_used_before_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(80_000, 8);
    let served = body.clone();
    let server = TestServer::start(move |req, _| range_reply(req, &served));
    let mirror = tmp.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    fs::write(mirror.join("blob.bin"), &body).unwrap();
    let ds = dataset(
        "mirrored",
        "vision",
        vec![entry("blob.bin", vec![server.url("/blob.bin")], &body, ArchiveFormat::None)],
        ".",
        &[],
    );
    let root = tmp.path().join("data");
    let dir = installer(&root, vec![Mirror::parse(mirror.to_str().unwrap())]).install(&ds).unwrap();
    assert_eq!(fs::read(dir.join("blob.bin")).unwrap(), body);
    assert_eq!(server.requests().len(), 0, "the network must not be used");
    assert!(mirror.join("blob.bin").exists(), "the mirror is left untouched");
    let marker: Marker = serde_json::from_str(&fs::read_to_string(dir.join(MARKER)).unwrap()).unwrap();
    assert!(marker.files[0].source.contains("mirror"), "{:?}", marker.files[0]);
}

#[test]
fn bad_mirror_copy_falls_back_to_canonical_url() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(30_000, 9);
    let served = body.clone();
    let server = TestServer::start(move |req, _| range_reply(req, &served));
    let mirror = tmp.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    fs::write(mirror.join("blob.bin"), b"corrupted copy").unwrap();
    let ds = dataset(
        "fallback",
        "vision",
        vec![entry("blob.bin", vec![server.url("/blob.bin")], &body, ArchiveFormat::None)],
        ".",
        &[],
    );
    let dir = installer(&tmp.path().join("data"), vec![Mirror::Dir(mirror)]).install(&ds).unwrap();
    assert_eq!(fs::read(dir.join("blob.bin")).unwrap(), body);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn url_mirror_gets_the_file_name_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(20_000, 10);
    let served = body.clone();
    let server = TestServer::start(move |req, _| {
        if req.path == "/mirror/data/blob.bin" {
            range_reply(req, &served)
        } else {
            Reply::status(404)
        }
    });
    let ds = dataset(
        "urlmirror",
        "speech",
        vec![entry(
            "blob.bin",
            vec![format!("http://127.0.0.1:{}/blob.bin", refused_port())],
            &body,
            ArchiveFormat::None,
        )],
        ".",
        &[],
    );
    let mirror = Mirror::parse(&server.url("/mirror/data/"));
    let dir = installer(&tmp.path().join("data"), vec![mirror]).install(&ds).unwrap();
    assert_eq!(fs::read(dir.join("blob.bin")).unwrap(), body);
    assert_eq!(server.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 6. Clear errors for 404 and refused connections.

#[test]
fn http_404_gives_a_clear_error_without_retrying() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(|_, _| Reply::status(404));
    let url = server.url("/missing.bin");
    let ds = dataset(
        "gone",
        "vision",
        vec![entry("missing.bin", vec![url.clone()], b"whatever", ArchiveFormat::None)],
        ".",
        &[],
    );
    let err = format!("{:#}", installer(&tmp.path().join("data"), Vec::new()).install(&ds).unwrap_err());
    assert!(err.contains("HTTP 404"), "{err}");
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("missing.bin") && err.contains("gone"), "{err}");
    assert_eq!(server.requests().len(), 1, "404 is not retried");
}

#[test]
fn refused_connection_gives_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/blob.bin", refused_port());
    let ds = dataset(
        "refused",
        "vision",
        vec![entry("blob.bin", vec![url.clone()], b"whatever", ArchiveFormat::None)],
        ".",
        &[],
    );
    let started = Instant::now();
    let err = format!("{:#}", installer(&tmp.path().join("data"), Vec::new()).install(&ds).unwrap_err());
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ---------------------------------------------------------------------------------------------
// 7. `resolve` goes through the manifest.

fn vision_and_text_catalog(body: &[u8]) -> Catalog {
    let nowhere = format!("http://127.0.0.1:{}/", refused_port());
    Catalog::from_datasets(vec![
        dataset(
            "tiny-vision",
            "vision",
            vec![entry("images.bin", vec![format!("{nowhere}images.bin")], body, ArchiveFormat::None)],
            ".",
            &["images.bin"],
        ),
        dataset(
            "tiny-text",
            "text",
            vec![entry("corpus.txt", vec![format!("{nowhere}corpus.txt")], b"text", ArchiveFormat::None)],
            ".",
            &[],
        ),
    ])
    .unwrap()
}

#[test]
fn resolve_installs_through_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(5_000, 11);
    let catalog = vision_and_text_catalog(&body);
    let mirror = tmp.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    fs::write(mirror.join("images.bin"), &body).unwrap();
    let root = tmp.path().join("data");

    let resolved =
        resolve_with(&catalog, "tiny-vision", "vision", Some(&root), &[mirror.to_string_lossy().into_owned()]).unwrap();
    assert_eq!(resolved.name, "tiny-vision");
    assert_eq!(resolved.modality, "vision");
    assert_eq!(resolved.reader, "test-reader");
    assert_eq!(resolved.path, root.join("tiny-vision"));
    assert_eq!(fs::read(resolved.path.join("images.bin")).unwrap(), body);

    // Already present: resolves without any mirror or network.
    fs::remove_dir_all(&mirror).unwrap();
    let again = resolve_with(&catalog, "tiny-vision", "vision", Some(&root), &[]).unwrap();
    assert_eq!(again, resolved);
}

#[test]
fn resolve_rejects_unknown_name() {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = vision_and_text_catalog(b"x");
    let err = resolve_with(&catalog, "imagenet-22k", "vision", Some(tmp.path()), &[]).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("unknown dataset") && err.contains("imagenet-22k"), "{err}");
    assert!(err.contains("tiny-vision"), "known names are listed: {err}");
}

#[test]
fn resolve_rejects_a_dataset_of_another_modality() {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = vision_and_text_catalog(b"x");
    let err = resolve_with(&catalog, "tiny-text", "vision", Some(tmp.path()), &[]).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("is a text dataset, not vision"), "{err}");
    assert!(err.contains("tiny-vision"), "{err}");
    assert!(!tmp.path().join("tiny-text").exists(), "nothing downloaded");
}

// ---------------------------------------------------------------------------------------------
// The shipped manifests.

#[test]
fn builtin_manifests_cover_the_required_datasets() {
    let catalog = Catalog::builtin().unwrap();
    for (name, modality) in [
        ("mnist", "vision"),
        ("fashion-mnist", "vision"),
        ("cifar-10", "vision"),
        ("cifar-100", "vision"),
        ("stl-10", "vision"),
        ("wikitext-103-raw", "text"),
        ("speech-commands-v2", "speech"),
        ("librispeech-train-clean-100", "speech"),
    ] {
        let ds = catalog.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(ds.modality, modality, "{name}");
        for file in &ds.files {
            assert!(file.size.is_some(), "{name}/{}", file.name);
            assert!(file.sha256.is_some() || file.md5.is_some(), "{name}/{}", file.name);
            assert!(file.checksum_source.is_some(), "{name}/{}", file.name);
        }
    }
    assert!(catalog.get("fashion-mnist").unwrap().all_verified());
}

#[test]
fn every_manifest_file_is_embedded() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/manifests");
    let mut on_disk: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = builtin_manifest_files().iter().map(|s| s.to_string()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded, "add new manifests to BUILTIN in manifest.rs");
    // And the directory parses the same way.
    assert_eq!(Catalog::from_dir(&dir).unwrap().names().len(), embedded.len());
}

#[test]
fn debian_fashion_mnist_encoding_is_accepted_as_alternate() {
    // The sha256 of the Debian package's files is recorded as an alternate; a file with that
    // exact hash would be accepted. Here only the bookkeeping is checked (no 30 MB fixture).
    let catalog = Catalog::builtin().unwrap();
    let ds = catalog.get("fashion-mnist").unwrap();
    for file in &ds.files {
        assert_eq!(file.alternates.len(), 1, "{}", file.name);
        let alt = &file.alternates[0];
        let digests =
            xtask::datasets::Digests { sha256: alt.sha256.clone(), md5: "0".repeat(32), size: alt.size.unwrap() };
        assert_eq!(xtask::datasets::check(file, &digests), Ok(xtask::datasets::Match::Alternate));
    }
}

#[test]
fn data_root_flag_env_and_default() {
    // Only this test touches SSL_DATA_ROOT; every other test passes an explicit root.
    std::env::set_var("SSL_DATA_ROOT", "/somewhere/else");
    assert_eq!(xtask::datasets::default_data_root(), PathBuf::from("/somewhere/else"));
    std::env::remove_var("SSL_DATA_ROOT");
    let default = xtask::datasets::default_data_root();
    assert!(default.ends_with("ssl-toolkit/datasets"), "{}", default.display());
}

#[test]
fn list_table_shows_status() {
    let tmp = tempfile::tempdir().unwrap();
    let body = payload(1_000, 12);
    let catalog = vision_and_text_catalog(&body);
    let mirror = tmp.path().join("mirror");
    fs::create_dir_all(&mirror).unwrap();
    fs::write(mirror.join("images.bin"), &body).unwrap();
    let inst = installer(tmp.path(), vec![Mirror::Dir(mirror)]);
    inst.install(catalog.get("tiny-vision").unwrap()).unwrap();
    let table = xtask::datasets::list_table(&catalog, &inst);
    let vision = table.lines().find(|l| l.starts_with("tiny-vision")).unwrap();
    assert!(vision.contains("present, verified"), "{table}");
    let text = table.lines().find(|l| l.starts_with("tiny-text")).unwrap();
    assert!(text.contains("missing"), "{table}");

    // A directory without a marker (e.g. an interrupted manual copy) is not "present".
    fs::create_dir_all(tmp.path().join("tiny-text")).unwrap();
    assert!(matches!(inst.status(catalog.get("tiny-text").unwrap()), Status::Incomplete(_)));
}
