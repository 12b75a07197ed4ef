//! [`LogReader`]: a decision log read one line at a time.

use std::borrow::Cow;
use std::io::{self, BufRead};

use serde::Deserialize;

use super::record::Record;
use super::vocab::{GateReason, Outcome, OverloadReason, Trigger};
use crate::trace::MAX_LINE_BYTES;

/// A malformed decision log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Reading failed.
    #[error("reading the decision log: {0}")]
    Io(#[from] io::Error),
    /// A line is malformed.
    #[error("decision log line {line}: {reason}")]
    Malformed {
        /// 1-based.
        line: u64,
        /// Why.
        reason: String,
    },
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    t_us: Option<u64>,
    id: Option<u64>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    retry_after_us: Option<u64>,
    crashed: Option<bool>,
    open: Option<bool>,
    #[serde(borrow)]
    trigger: Option<Cow<'a, str>>,
    older_than_us: Option<u64>,
    byte_goal: Option<u64>,
    files_removed: Option<u64>,
    bytes_freed: Option<u64>,
    stage: Option<u32>,
    files: Option<u32>,
    bytes: Option<u64>,
    file: Option<u32>,
    available_bytes: Option<u64>,
    used_bytes: Option<u64>,
}

/// Reads a decision log one line at a time.
#[derive(Debug)]
pub struct LogReader<R> {
    input: R,
    buf: String,
    line: u64,
}

impl<R: BufRead> LogReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> Self {
        LogReader {
            input,
            buf: String::new(),
            line: 0,
        }
    }

    /// The line number of the record last returned.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next record, `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<Record>, LogError> {
        loop {
            self.buf.clear();
            let limit = MAX_LINE_BYTES as u64;
            if io::Read::take(&mut self.input, limit).read_line(&mut self.buf)? == 0 {
                return Ok(None);
            }
            self.line += 1;
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            let line = self.line;
            let raw: RawRecord<'_> =
                serde_json::from_str(text).map_err(|e| LogError::Malformed {
                    line,
                    reason: e.to_string(),
                })?;
            return parse(&raw)
                .map(Some)
                .map_err(|reason| LogError::Malformed { line, reason });
        }
    }
}

fn need<T>(v: Option<T>, field: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("missing `{field}`"))
}

/// The record a parsed line holds, or what is wrong with it.
fn parse(raw: &RawRecord<'_>) -> Result<Record, String> {
    let t_us = need(raw.t_us, "t_us")?;
    let event = raw.event.as_deref().ok_or("missing `event`")?;
    Ok(match event {
        "decision" => decision(raw, t_us)?,
        "job_start" => Record::JobStart {
            t_us,
            id: need(raw.id, "id")?,
        },
        "job_end" => Record::JobEnd {
            t_us,
            id: need(raw.id, "id")?,
            crashed: need(raw.crashed, "crashed")?,
        },
        "gate" => Record::Gate {
            t_us,
            open: need(raw.open, "open")?,
            reason: match raw.reason.as_deref() {
                None => None,
                Some("low_memory") => Some(GateReason::LowMemory),
                Some("low_disk") => Some(GateReason::LowDisk),
                Some(other) => return Err(format!("unknown gate `reason` {other:?}")),
            },
        },
        "sweep" => Record::Sweep {
            t_us,
            trigger: match raw.trigger.as_deref() {
                Some("schedule") => Trigger::Schedule,
                Some("pressure") => Trigger::Pressure,
                other => return Err(format!("bad `trigger` {other:?}")),
            },
            older_than_us: need(raw.older_than_us, "older_than_us")?,
            byte_goal: raw.byte_goal,
            files_removed: need(raw.files_removed, "files_removed")?,
            bytes_freed: need(raw.bytes_freed, "bytes_freed")?,
        },
        "files_written" => Record::FilesWritten {
            t_us,
            id: need(raw.id, "id")?,
            stage: need(raw.stage, "stage")?,
            files: need(raw.files, "files")?,
            bytes: need(raw.bytes, "bytes")?,
        },
        "file_removed" => Record::FileRemoved {
            t_us,
            id: need(raw.id, "id")?,
            file: need(raw.file, "file")?,
        },
        "memory" => Record::Memory {
            t_us,
            available_bytes: need(raw.available_bytes, "available_bytes")?,
        },
        "disk" => Record::Disk {
            t_us,
            used_bytes: need(raw.used_bytes, "used_bytes")?,
        },
        other => return Err(format!("unknown `event` {other:?}")),
    })
}

fn decision(raw: &RawRecord<'_>, t_us: u64) -> Result<Record, String> {
    let outcome = match raw.outcome.as_deref() {
        Some("admitted") => Outcome::Admitted,
        Some("rate_limited") => Outcome::RateLimited,
        Some("overloaded") => Outcome::Overloaded,
        other => return Err(format!("bad `outcome` {other:?}")),
    };
    let reason = match raw.reason.as_deref() {
        None => None,
        Some("queue_full") => Some(OverloadReason::QueueFull),
        Some("too_many_keys") => Some(OverloadReason::TooManyKeys),
        Some(other) => return Err(format!("unknown `reason` {other:?}")),
    };
    Ok(Record::Decision {
        t_us,
        id: need(raw.id, "id")?,
        outcome,
        reason,
        retry_after_us: raw.retry_after_us,
    })
}
