//! TensorBoard event files: scalars a run logs, in the format `tensorboard --logdir` shows and
//! `wandb sync` imports, and a reader that checks every record.
//!
//! An event file is a sequence of TFRecord records, each
//! `u64 length | u32 masked CRC32C of the length | data | u32 masked CRC32C of the data` (all
//! little-endian), whose data is one serialized `tensorflow.Event` protobuf. The first event of a
//! file carries `file_version: "brain.Event:2"`; every later one a `Summary` with one
//! `simple_value` per tag.
//!
//! ```
//! use ssl_records::tensorboard::{read_scalars, EventWriter};
//! let dir = tempfile::tempdir().unwrap();
//! let mut w = EventWriter::create(dir.path()).unwrap();
//! w.scalar("train/loss", 1, 2.5).unwrap();
//! w.flush().unwrap();
//! let scalars = read_scalars(w.path()).unwrap();
//! assert_eq!((scalars[0].tag.as_str(), scalars[0].step, scalars[0].value), ("train/loss", 1, 2.5));
//! ```
//!
//! The protobuf messages are hand-written structs deriving [`prost::Message`] (no `.proto` file,
//! no protoc, no build script) rather than a hand-written encoder: the reader must decode files
//! other tools wrote too, skipping every field this module does not model (graphs, histograms,
//! tensors, session logs) and rejecting malformed bytes with an error instead of a panic, and
//! prost's decoder already does both; a hand-rolled one is where such bugs would hide.
use prost::Message;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The `file_version` of the first event of every file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// `tensorflow.Event`, the fields this module writes and reads (`what` is a oneof in the
/// `.proto`; optional fields are the same on the wire).
#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(string, optional, tag = "3")]
    file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`. `simple_value` is a member of the `value` oneof, so it is written
/// even when it is 0.0 (hence `optional`): without it TensorBoard would not see a scalar.
#[derive(Clone, PartialEq, Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
}

/// The TFRecord checksum: CRC32C (Castagnoli), rotated and offset so that a CRC of data holding
/// CRCs stays well distributed: `((crc >> 15) | (crc << 17)) + 0xa282ead8`, wrapping.
pub fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord record holding `data`.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The host name for the file name: `/proc/sys/kernel/hostname`, else `HOSTNAME`, else
/// `localhost`; characters that do not belong in a file name become `_`.
fn hostname() -> String {
    let clean = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(clean)
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(clean))
        .unwrap_or_else(|| "localhost".into());
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

/// `e` with `path` in its message.
fn at_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes one TensorBoard event file. Writes are buffered; [`EventWriter::flush`] (and dropping
/// the writer) hands them to the file, so a TensorBoard watching the directory sees them.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new file `events.out.tfevents.<unix secs>.<hostname>.<pid>.ssl`
    /// in it, whose first record is the `file_version: "brain.Event:2"` event. An existing file is
    /// never overwritten: a second writer in the same directory, process and second gets
    /// `...<pid>.<n>.ssl`.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| at_path(e, dir))?;
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let stem = format!("events.out.tfevents.{secs}.{}.{}", hostname(), std::process::id());
        let mut n = 0u32;
        let (path, file) = loop {
            let path = dir.join(if n == 0 { format!("{stem}.ssl") } else { format!("{stem}.{n}.ssl") });
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(at_path(e, &path)),
            }
        };
        let mut w = Self { path, out: BufWriter::new(file) };
        w.write_event(&Event { wall_time: now(), file_version: Some(FILE_VERSION.into()), ..Default::default() })?;
        w.flush()?;
        Ok(w)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One scalar at `step`, wall time now.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f64) -> io::Result<()> {
        self.scalar_at(tag, step, value, now())
    }

    /// One scalar at `step` and `wall_time` (seconds since the Unix epoch). TensorBoard stores
    /// scalars as f32.
    pub fn scalar_at(&mut self, tag: &str, step: i64, value: f64, wall_time: f64) -> io::Result<()> {
        let value = SummaryValue { tag: tag.into(), simple_value: Some(value as f32) };
        self.write_event(&Event { wall_time, step, file_version: None, summary: Some(Summary { value: vec![value] }) })
    }

    /// Hand the buffered records to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush().map_err(|e| at_path(e, &self.path))
    }

    fn write_event(&mut self, event: &Event) -> io::Result<()> {
        self.out.write_all(&record(&event.encode_to_vec())).map_err(|e| at_path(e, &self.path))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// One scalar read back from an event file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarEvent {
    pub tag: String,
    pub step: i64,
    pub value: f32,
    pub wall_time: f64,
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Read every scalar (`simple_value`) of an event file, checking both CRCs of every record; a bad
/// CRC or truncated record is an error naming the file and byte offset (never a panic). Events
/// without scalars (the file version, or what other tools write: graphs, histograms) are skipped.
pub fn read_scalars(path: &Path) -> io::Result<Vec<ScalarEvent>> {
    let bytes = std::fs::read(path).map_err(|e| at_path(e, path))?;
    let bad = |kind: ErrorKind, offset: usize, what: String| {
        io::Error::new(kind, format!("{}: record at byte {offset}: {what}", path.display()))
    };
    let mut scalars = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 12 {
            let what = format!("truncated header ({} of 12 bytes)", rest.len());
            return Err(bad(ErrorKind::UnexpectedEof, at, what));
        }
        if masked_crc(&rest[..8]) != le_u32(&rest[8..12]) {
            return Err(bad(ErrorKind::InvalidData, at, "length checksum mismatch".into()));
        }
        let len = u64::from_le_bytes([rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6], rest[7]]);
        let left = (rest.len() - 12) as u64;
        if len.checked_add(4).is_none_or(|need| need > left) {
            let what = format!("truncated: {len} data bytes and a 4-byte checksum announced, {left} bytes left");
            return Err(bad(ErrorKind::UnexpectedEof, at, what));
        }
        let len = len as usize;
        let data = &rest[12..12 + len];
        if masked_crc(data) != le_u32(&rest[12 + len..16 + len]) {
            return Err(bad(ErrorKind::InvalidData, at, "data checksum mismatch".into()));
        }
        let event = Event::decode(data)
            .map_err(|e| bad(ErrorKind::InvalidData, at, format!("not a TensorBoard Event: {e}")))?;
        for v in event.summary.into_iter().flat_map(|s| s.value) {
            if let Some(value) = v.simple_value {
                scalars.push(ScalarEvent { tag: v.tag, step: event.step, value, wall_time: event.wall_time });
            }
        }
        at += 16 + len;
    }
    Ok(scalars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    // Computed independently with a bit-by-bit CRC32C in Python:
    //
    //   def crc32c(data):
    //       crc = 0xFFFFFFFF
    //       for b in data:
    //           crc ^= b
    //           for _ in range(8):
    //               crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    //       return crc ^ 0xFFFFFFFF
    //   def mask(c):
    //       return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    //   for d in [b"123456789", b"", b"\x00" * 8, (32).to_bytes(8, "little")]:
    //       print(d, hex(crc32c(d)), hex(mask(crc32c(d))))
    //
    // b'123456789' 0xe3069283 0xc78ab0e5   (0xe3069283 is CRC-32C's published check value)
    // b'' 0x0 0xa282ead8
    // b'\x00\x00\x00\x00\x00\x00\x00\x00' 0x8c28b28a 0x7980329
    // b' \x00\x00\x00\x00\x00\x00\x00' 0x8128d713 0x50a9ed29
    #[test]
    fn masked_crc_matches_python() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        assert_eq!(masked_crc(&[0; 8]), 0x0798_0329);
        assert_eq!(masked_crc(&32u64.to_le_bytes()), 0x50a9_ed29);
    }

    // The same two records written by TensorBoard's own writer (tensorboard 2.21.0):
    //
    //   import io
    //   from tensorboard.compat.proto import event_pb2, summary_pb2
    //   from tensorboard.summary.writer.record_writer import RecordWriter
    //   buf = io.BytesIO()
    //   w = RecordWriter(buf)
    //   w.write(event_pb2.Event(wall_time=1700000000.5, step=0, file_version="brain.Event:2").SerializeToString())
    //   v = summary_pb2.Summary.Value(tag="train/loss", simple_value=0.25)
    //   w.write(event_pb2.Event(wall_time=1700000001.25, step=7,
    //                           summary=summary_pb2.Summary(value=[v])).SerializeToString())
    //   print(buf.getvalue().hex())
    #[test]
    fn records_are_byte_identical_to_tensorboards_writer() {
        let expected = hex(concat!(
            "1800000000000000a37f4b220900002040fc54d9411a0d627261696e2e4576656e743a322b353110",
            "200000000000000029eda9500900005040fc54d94110072a130a110a0a747261696e2f6c6f7373150000803e70e68245"
        ));
        let version =
            Event { wall_time: 1700000000.5, step: 0, file_version: Some(FILE_VERSION.into()), summary: None };
        let value = SummaryValue { tag: "train/loss".into(), simple_value: Some(0.25) };
        let scalar = Event {
            wall_time: 1700000001.25,
            step: 7,
            file_version: None,
            summary: Some(Summary { value: vec![value] }),
        };
        let mut ours = record(&version.encode_to_vec());
        ours.extend(record(&scalar.encode_to_vec()));
        assert_eq!(ours, expected);
    }

    /// A file with three scalars; returns it and its bytes.
    fn sample(dir: &Path) -> (PathBuf, Vec<u8>) {
        let mut w = EventWriter::create(dir).unwrap();
        w.scalar_at("train/loss", 1, 2.5, 100.0).unwrap();
        w.scalar_at("train/loss", 2, 0.0, 101.0).unwrap();
        w.scalar_at("eval/acc", 2, 0.125, 102.0).unwrap();
        let path = w.path().to_path_buf();
        drop(w); // flushes
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    #[test]
    fn round_trips_and_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("runs/a");
        let (path, _) = sample(&dir);
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        assert!(name.ends_with(&format!(".{}.ssl", std::process::id())), "{name}");
        assert_eq!(path.parent().unwrap(), dir);
        let got = read_scalars(&path).unwrap();
        let scalar = |tag: &str, step, value, wall_time| ScalarEvent { tag: tag.into(), step, value, wall_time };
        assert_eq!(
            got,
            vec![
                scalar("train/loss", 1, 2.5, 100.0),
                scalar("train/loss", 2, 0.0, 101.0),
                scalar("eval/acc", 2, 0.125, 102.0)
            ]
        );
        // The first record is the file version.
        let bytes = std::fs::read(&path).unwrap();
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let first = Event::decode(&bytes[12..12 + len]).unwrap();
        assert_eq!(first.file_version.as_deref(), Some(FILE_VERSION));
        assert!(first.wall_time > 1.6e9 && first.summary.is_none());
    }

    #[test]
    fn a_second_writer_in_the_same_directory_gets_its_own_file() {
        let d = tempfile::tempdir().unwrap();
        let mut a = EventWriter::create(d.path()).unwrap();
        let mut b = EventWriter::create(d.path()).unwrap();
        assert_ne!(a.path(), b.path());
        a.scalar("x", 1, 1.0).unwrap();
        b.scalar("x", 1, 2.0).unwrap();
        a.flush().unwrap();
        b.flush().unwrap();
        assert_eq!(read_scalars(a.path()).unwrap()[0].value, 1.0);
        assert_eq!(read_scalars(b.path()).unwrap()[0].value, 2.0);
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let (path, bytes) = sample(d.path());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            std::fs::write(&path, &b).unwrap();
            let e = read_scalars(&path).expect_err(&format!("flipped byte {i} was not detected"));
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        // The error names the record's offset.
        let first = 16 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut b = bytes.clone();
        b[first + 14] ^= 1;
        std::fs::write(&path, &b).unwrap();
        let e = read_scalars(&path).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert!(e.to_string().contains(&format!("record at byte {first}: data checksum mismatch")), "{e}");
    }

    #[test]
    fn a_truncated_file_is_an_error_except_at_record_boundaries() {
        let d = tempfile::tempdir().unwrap();
        let (path, bytes) = sample(d.path());
        let mut boundaries = vec![0];
        while *boundaries.last().unwrap() < bytes.len() {
            let at = *boundaries.last().unwrap();
            boundaries.push(at + 16 + u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize);
        }
        assert_eq!(boundaries.len(), 5, "version + 3 scalars");
        for cut in 0..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            match boundaries.iter().position(|&b| b == cut) {
                Some(records) => assert_eq!(read_scalars(&path).unwrap().len(), records.saturating_sub(1)),
                None => {
                    let e = read_scalars(&path).expect_err(&format!("cut at {cut} was not detected"));
                    assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
                }
            }
        }
        // A huge announced length is an error too, not an allocation or an overflow.
        let mut b = u64::MAX.to_le_bytes().to_vec();
        b.extend(masked_crc(&b).to_le_bytes());
        std::fs::write(&path, &b).unwrap();
        assert!(read_scalars(&path).unwrap_err().to_string().contains("truncated"));
    }

    #[test]
    fn a_record_that_is_not_an_event_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("events.out.tfevents.bad");
        std::fs::write(&path, record(&[0xff; 5])).unwrap();
        let e = read_scalars(&path).unwrap_err();
        assert!(e.to_string().contains("record at byte 0: not a TensorBoard Event"), "{e}");
    }
}
