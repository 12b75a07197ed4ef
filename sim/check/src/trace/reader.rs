//! [`TraceReader`]: the trace read one line at a time, validated as it goes.

use std::borrow::Cow;
use std::io::{self, BufRead};

use serde::Deserialize;

use super::event::{
    Event, MAX_BYTES_PER_JOB, MAX_FILES_PER_JOB, MAX_KEY_BYTES, MAX_KEYS, MAX_LINE_BYTES,
    MAX_TIME_US, Request,
};
use super::keys::{IdSet, KeyTable};

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

/// Reads a trace one line at a time, validating as it goes.
///
/// ```
/// use backstop_sim_check::trace::{Event, TraceReader};
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
/// # Ok::<(), backstop_sim_check::trace::TraceError>(())
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
            "request" => Event::Request(self.request(&raw, t_us)?),
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

    /// A request line's fields, each within its bound; its id new, its key interned.
    fn request(&mut self, raw: &RawLine<'_>, t_us: u64) -> Result<Request, TraceError> {
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
                return Err(self.malformed(format!("`key` is longer than {MAX_KEY_BYTES} bytes")));
            }
            Some(k) => Some(
                self.keys
                    .intern(k)
                    .ok_or_else(|| self.malformed(format!("more than {MAX_KEYS} distinct keys")))?,
            ),
        };
        if !self.ids.insert(id) {
            return Err(self.malformed(format!("duplicate request `id` {id}")));
        }
        Ok(Request {
            t_us,
            id,
            key,
            job_us,
            files: files as u32,
            bytes,
        })
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
