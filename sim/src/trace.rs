//! The trace format: JSON Lines of requests and resource readings, streamed.
//!
//! See `sim/README.md` for the format. [`TraceReader`] reads one line at a time, so memory
//! stays flat however long the trace (apart from one bit per request id, to reject
//! duplicates, and the interned client keys, both bounded).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::io::{self, BufRead, Write};

use serde::Deserialize;

/// Microseconds in 100 years (36 525 days): the largest time or duration a trace may hold.
pub const MAX_TIME_US: u64 = 36_525 * 86_400 * 1_000_000;
/// The longest line accepted, in bytes (without its line ending).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// The most temp files one job may declare.
pub const MAX_FILES_PER_JOB: u32 = 4096;
/// The most temp bytes one job may declare (1 PiB).
pub const MAX_BYTES_PER_JOB: u64 = 1 << 50;
/// The longest client key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The most distinct client keys in one trace.
pub const MAX_KEYS: usize = 1_000_000;
/// Request ids below this are remembered in a bitmap (1 bit each, at most 32 MiB);
/// larger ids in an ordered set.
const DENSE_ID_LIMIT: u64 = 1 << 28;

const _: () = assert!(
    MAX_TIME_US < u64::MAX / 1_000,
    "times must fit in u64 nanoseconds"
);
const _: () = assert!(MAX_KEYS <= u32::MAX as usize, "key indices are u32");

/// One request: a client asks for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Arrival, virtual microseconds.
    pub t_us: u64,
    /// Unique request id.
    pub id: u64,
    /// The client's key, interned (index into the trace's key table), if any.
    pub key: Option<u32>,
    /// How long the job runs once started, microseconds.
    pub job_us: u64,
    /// Temp files the job writes (0 when absent).
    pub files: u32,
    /// Total bytes of those files (0 when absent).
    pub bytes: u64,
}

/// One trace event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A request arrives.
    Request(Request),
    /// Available memory is read.
    Memory {
        /// Virtual microseconds.
        t_us: u64,
        /// Bytes of memory available.
        available_bytes: u64,
    },
    /// Background disk usage (besides temp files) is read.
    Disk {
        /// Virtual microseconds.
        t_us: u64,
        /// Bytes used on the temp disk by everything but the simulated temp files.
        used_bytes: u64,
    },
}

impl Event {
    /// The event's virtual time in microseconds.
    pub fn t_us(&self) -> u64 {
        match *self {
            Event::Request(r) => r.t_us,
            Event::Memory { t_us, .. } | Event::Disk { t_us, .. } => t_us,
        }
    }
}

/// Why a trace line was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Reading the trace failed.
    #[error("reading the trace: {0}")]
    Io(#[from] io::Error),
    /// A line is malformed.
    #[error("line {line}: {reason}")]
    Malformed {
        /// 1-based, counting every line (blank ones too).
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl TraceError {
    /// The offending line, for malformed input.
    pub fn line(&self) -> Option<u64> {
        match self {
            TraceError::Io(_) => None,
            TraceError::Malformed { line, .. } => Some(*line),
        }
    }
}

#[derive(Deserialize)]
struct RawLine<'a> {
    t_us: Option<u64>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    id: Option<u64>,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    job_us: Option<u64>,
    files: Option<u64>,
    bytes: Option<u64>,
    available_bytes: Option<u64>,
    used_bytes: Option<u64>,
}

/// Remembers request ids to reject duplicates: a bitmap for small ids, a set beyond.
#[derive(Debug, Default)]
pub struct IdSet {
    dense: Vec<u64>,
    sparse: BTreeSet<u64>,
}

impl IdSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `id`; false if it was already there.
    pub fn insert(&mut self, id: u64) -> bool {
        if id < DENSE_ID_LIMIT {
            let word = (id / 64) as usize;
            if word >= self.dense.len() {
                // Grow geometrically so sequential ids cost amortised O(1).
                let new_len = (word + 1)
                    .max(self.dense.len() * 2)
                    .min((DENSE_ID_LIMIT / 64) as usize);
                self.dense.resize(new_len, 0);
            }
            let bit = 1u64 << (id % 64);
            let seen = self.dense[word] & bit != 0;
            self.dense[word] |= bit;
            !seen
        } else {
            self.sparse.insert(id)
        }
    }
}

/// Client keys seen in a trace, interned to dense indices.
#[derive(Debug, Default)]
pub struct KeyTable {
    index: HashMap<String, u32>,
    names: Vec<String>,
}

impl KeyTable {
    /// The key's index, adding it if new; `None` when the table is full.
    pub fn intern(&mut self, key: &str) -> Option<u32> {
        if let Some(&i) = self.index.get(key) {
            return Some(i);
        }
        if self.names.len() >= MAX_KEYS {
            return None;
        }
        let i = self.names.len() as u32;
        self.index.insert(key.to_owned(), i);
        self.names.push(key.to_owned());
        Some(i)
    }

    /// The name of key `i`.
    pub fn name(&self, i: u32) -> Option<&str> {
        self.names.get(i as usize).map(String::as_str)
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no key was seen.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Reads a trace one line at a time, validating as it goes.
///
/// ```
/// use backstop_sim::trace::{Event, TraceReader};
/// let text = "{\"t_us\":0,\"type\":\"request\",\"id\":1,\"job_us\":5}\r\n\n{\"t_us\":3,\"type\":\"memory\",\"available_bytes\":9}\n";
/// let mut reader = TraceReader::new(text.as_bytes());
/// assert!(matches!(reader.next_event()?, Some(Event::Request(r)) if r.id == 1 && r.job_us == 5));
/// assert_eq!(reader.next_event()?, Some(Event::Memory { t_us: 3, available_bytes: 9 }));
/// assert_eq!(reader.next_event()?, None);
///
/// let bad = "{\"t_us\":5,\"type\":\"disk\",\"used_bytes\":1}\n{\"t_us\":4,\"type\":\"disk\",\"used_bytes\":1}\n";
/// let mut reader = TraceReader::new(bad.as_bytes());
/// reader.next_event()?;
/// let err = reader.next_event().unwrap_err();
/// assert_eq!(err.line(), Some(2));
/// # Ok::<(), backstop_sim::trace::TraceError>(())
/// ```
#[derive(Debug)]
pub struct TraceReader<R> {
    input: R,
    buf: Vec<u8>,
    line: u64,
    last_t_us: u64,
    ids: IdSet,
    keys: KeyTable,
    bytes_read: u64,
}

impl<R: BufRead> TraceReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> Self {
        TraceReader {
            input,
            buf: Vec::with_capacity(256),
            line: 0,
            last_t_us: 0,
            ids: IdSet::new(),
            keys: KeyTable::default(),
            bytes_read: 0,
        }
    }

    /// The client keys seen so far.
    pub fn keys(&self) -> &KeyTable {
        &self.keys
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Lines consumed so far.
    pub fn lines_read(&self) -> u64 {
        self.line
    }

    fn malformed(&self, reason: impl Into<String>) -> TraceError {
        TraceError::Malformed {
            line: self.line,
            reason: reason.into(),
        }
    }

    /// The next event, `None` at the end of the trace.
    pub fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        loop {
            self.buf.clear();
            let limit = MAX_LINE_BYTES as u64 + 2;
            let n = io::Read::take(&mut self.input, limit).read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            self.bytes_read += n as u64;
            let mut end = self.buf.len();
            let had_newline = self.buf.last() == Some(&b'\n');
            if had_newline {
                end -= 1;
            }
            if end > 0 && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            if end > MAX_LINE_BYTES || (!had_newline && n as u64 == limit) {
                return Err(self.malformed(format!("line longer than {MAX_LINE_BYTES} bytes")));
            }
            if self.buf[..end].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // Take the buffer so the parsed line can borrow it while `validate` borrows self.
            let buf = std::mem::take(&mut self.buf);
            let result = match std::str::from_utf8(&buf[..end]) {
                Err(e) => Err(self.malformed(format!("not UTF-8: {e}"))),
                Ok(text) => match serde_json::from_str::<RawLine<'_>>(text) {
                    Err(e) => Err(self.malformed(json_reason(&e))),
                    Ok(raw) => self.validate(raw),
                },
            };
            self.buf = buf;
            return result.map(Some);
        }
    }

    fn validate(&mut self, raw: RawLine<'_>) -> Result<Event, TraceError> {
        let t_us = raw
            .t_us
            .ok_or_else(|| self.malformed("missing field `t_us`"))?;
        if t_us > MAX_TIME_US {
            return Err(
                self.malformed(format!("`t_us` {t_us} is beyond 100 years ({MAX_TIME_US})"))
            );
        }
        if t_us < self.last_t_us {
            return Err(self.malformed(format!(
                "`t_us` {t_us} is before the previous event's {}",
                self.last_t_us
            )));
        }
        let kind = raw
            .kind
            .as_deref()
            .ok_or_else(|| self.malformed("missing field `type`"))?;
        let event = match kind {
            "request" => {
                let id = raw.id.ok_or_else(|| self.malformed("missing field `id`"))?;
                let job_us = raw
                    .job_us
                    .ok_or_else(|| self.malformed("missing field `job_us`"))?;
                if job_us > MAX_TIME_US {
                    return Err(self.malformed(format!(
                        "`job_us` {job_us} is beyond 100 years ({MAX_TIME_US})"
                    )));
                }
                let files = raw.files.unwrap_or(0);
                if files > u64::from(MAX_FILES_PER_JOB) {
                    return Err(self.malformed(format!(
                        "`files` {files} is above the limit of {MAX_FILES_PER_JOB}"
                    )));
                }
                let bytes = raw.bytes.unwrap_or(0);
                if bytes > MAX_BYTES_PER_JOB {
                    return Err(self.malformed(format!(
                        "`bytes` {bytes} is above the limit of {MAX_BYTES_PER_JOB}"
                    )));
                }
                let key = match raw.key.as_deref() {
                    None => None,
                    Some(k) if k.len() > MAX_KEY_BYTES => {
                        return Err(
                            self.malformed(format!("`key` is longer than {MAX_KEY_BYTES} bytes"))
                        );
                    }
                    Some(k) => Some(self.keys.intern(k).ok_or_else(|| {
                        self.malformed(format!("more than {MAX_KEYS} distinct keys"))
                    })?),
                };
                if !self.ids.insert(id) {
                    return Err(self.malformed(format!("duplicate request `id` {id}")));
                }
                Event::Request(Request {
                    t_us,
                    id,
                    key,
                    job_us,
                    files: files as u32,
                    bytes,
                })
            }
            "memory" => Event::Memory {
                t_us,
                available_bytes: raw
                    .available_bytes
                    .ok_or_else(|| self.malformed("missing field `available_bytes`"))?,
            },
            "disk" => Event::Disk {
                t_us,
                used_bytes: raw
                    .used_bytes
                    .ok_or_else(|| self.malformed("missing field `used_bytes`"))?,
            },
            other => {
                return Err(self.malformed(format!(
                    "unknown `type` `{}` (expected request, memory or disk)",
                    other.escape_debug()
                )));
            }
        };
        self.last_t_us = t_us;
        Ok(event)
    }
}

/// serde_json's message without its "at line 1 column N" suffix (we count lines ourselves),
/// with the column kept.
fn json_reason(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let msg = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => &full,
    };
    format!("column {}: {msg}", e.column())
}

/// Writes events as trace lines.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
}

impl<W: Write> TraceWriter<W> {
    /// A writer into `out` (buffer it).
    pub fn new(out: W) -> Self {
        TraceWriter { out }
    }

    /// Writes one event; `key_name` names interned keys.
    pub fn write(&mut self, event: &Event, key_name: impl Fn(u32) -> String) -> io::Result<()> {
        match *event {
            Event::Request(r) => {
                write!(
                    self.out,
                    "{{\"t_us\":{},\"type\":\"request\",\"id\":{}",
                    r.t_us, r.id
                )?;
                if let Some(k) = r.key {
                    let name = serde_json::to_string(&key_name(k)).map_err(io::Error::other)?;
                    write!(self.out, ",\"key\":{name}")?;
                }
                writeln!(
                    self.out,
                    ",\"job_us\":{},\"files\":{},\"bytes\":{}}}",
                    r.job_us, r.files, r.bytes
                )
            }
            Event::Memory {
                t_us,
                available_bytes,
            } => writeln!(
                self.out,
                "{{\"t_us\":{t_us},\"type\":\"memory\",\"available_bytes\":{available_bytes}}}"
            ),
            Event::Disk { t_us, used_bytes } => writeln!(
                self.out,
                "{{\"t_us\":{t_us},\"type\":\"disk\",\"used_bytes\":{used_bytes}}}"
            ),
        }
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<Event>, TraceError> {
        let mut r = TraceReader::new(text.as_bytes());
        let mut v = Vec::new();
        while let Some(e) = r.next_event()? {
            v.push(e);
        }
        Ok(v)
    }

    fn err_line(text: &str) -> (u64, String) {
        match all(text) {
            Err(TraceError::Malformed { line, reason }) => (line, reason),
            other => panic!("expected a malformed-line error, got {other:?}"),
        }
    }

    const OK1: &str = r#"{"t_us":0,"type":"request","id":1,"key":"client-7","job_us":90000000,"files":12,"bytes":52428800}"#;

    #[test]
    fn parses_all_types_and_ignores_unknown_fields() {
        let text = format!(
            "{OK1}\n{{\"t_us\":1,\"type\":\"memory\",\"available_bytes\":5,\"extra\":[1,2]}}\r\n\r\n   \n{{\"t_us\":1,\"type\":\"disk\",\"used_bytes\":7}}"
        );
        let v = all(&text).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[0],
            Event::Request(Request {
                t_us: 0,
                id: 1,
                key: Some(0),
                job_us: 90_000_000,
                files: 12,
                bytes: 52_428_800
            })
        );
        assert_eq!(
            v[1],
            Event::Memory {
                t_us: 1,
                available_bytes: 5
            }
        );
        assert_eq!(
            v[2],
            Event::Disk {
                t_us: 1,
                used_bytes: 7
            }
        );
    }

    #[test]
    fn malformed_lines_name_their_line_and_problem() {
        let cases: &[(&str, &str)] = &[
            (r#"{"t_us":1,"type":"bogus"}"#, "unknown `type`"),
            (
                r#"{"t_us":1,"type":"request","id":1,"job_us":1}"#,
                "duplicate request `id` 1",
            ),
            (
                r#"{"t_us":-1,"type":"disk","used_bytes":1}"#,
                "integer `-1`",
            ),
            (
                r#"{"t_us":1.5,"type":"disk","used_bytes":1}"#,
                "floating point",
            ),
            (
                r#"{"t_us":3155760000000001,"type":"disk","used_bytes":1}"#,
                "beyond 100 years",
            ),
            (
                r#"{"t_us":1,"type":"request","id":2,"job_us":3155760000000001}"#,
                "`job_us`",
            ),
            (
                r#"{"t_us":1,"type":"request","id":2}"#,
                "missing field `job_us`",
            ),
            (r#"{"type":"disk","used_bytes":1}"#, "missing field `t_us`"),
            (
                r#"{"t_us":1,"type":"memory"}"#,
                "missing field `available_bytes`",
            ),
            (
                r#"{"t_us":1,"type":"disk","used_bytes":"9"}"#,
                "invalid type",
            ),
            (r#"not json"#, "column 2: expected ident"),
            (
                r#"{"t_us":1,"type":"request","id":2,"job_us":1,"files":5000}"#,
                "`files`",
            ),
            (
                r#"{"t_us":1,"type":"disk","used_bytes":18446744073709551616}"#,
                "column",
            ),
        ];
        for (bad, needle) in cases {
            let text = format!("{OK1}\n\n{bad}\n{OK1}\n");
            let (line, reason) = err_line(&text);
            assert_eq!(line, 3, "{bad}");
            assert!(reason.contains(needle), "{bad}: {reason}");
        }
    }

    #[test]
    fn decreasing_time_is_malformed() {
        let text = "{\"t_us\":5,\"type\":\"disk\",\"used_bytes\":1}\n{\"t_us\":4,\"type\":\"disk\",\"used_bytes\":1}\n";
        let (line, reason) = err_line(text);
        assert_eq!(line, 2);
        assert!(reason.contains("before the previous"), "{reason}");
    }

    #[test]
    fn overlong_and_non_utf8_lines_are_malformed() {
        let long = format!(
            "{{\"t_us\":1,\"type\":\"disk\",\"used_bytes\":1,\"pad\":\"{}\"}}\n",
            "x".repeat(MAX_LINE_BYTES)
        );
        assert!(err_line(&long).1.contains("longer than"));
        let mut bytes = b"{\"t_us\":1,\"type\":\"disk\",\"used_bytes\":1}\n".to_vec();
        bytes.extend_from_slice(b"\xff\xfe\n");
        let mut r = TraceReader::new(&bytes[..]);
        r.next_event().unwrap();
        let e = r.next_event().unwrap_err();
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("UTF-8"));
    }

    #[test]
    fn writer_output_reads_back() {
        let events = vec![
            Event::Request(Request {
                t_us: 3,
                id: 9,
                key: Some(2),
                job_us: 4,
                files: 1,
                bytes: 5,
            }),
            Event::Memory {
                t_us: 4,
                available_bytes: 6,
            },
            Event::Disk {
                t_us: 4,
                used_bytes: 8,
            },
            Event::Request(Request {
                t_us: 5,
                id: 10,
                key: None,
                job_us: 4,
                files: 0,
                bytes: 0,
            }),
        ];
        let mut w = TraceWriter::new(Vec::new());
        for e in &events {
            w.write(e, |k| format!("client-\"{k}\"")).unwrap();
        }
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let mut r = TraceReader::new(text.as_bytes());
        let mut back = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            back.push(e);
        }
        // Keys are re-interned from 0 on reading.
        let mut expected = events.clone();
        if let Event::Request(r) = &mut expected[0] {
            r.key = Some(0);
        }
        assert_eq!(back, expected);
        assert_eq!(r.keys().name(0), Some("client-\"2\""));
    }

    #[test]
    fn id_set_detects_duplicates_dense_and_sparse() {
        let mut s = IdSet::new();
        assert!(s.insert(0));
        assert!(s.insert(1 << 40));
        assert!(s.insert(12345));
        assert!(!s.insert(0));
        assert!(!s.insert(1 << 40));
        assert!(!s.insert(12345));
    }
}
