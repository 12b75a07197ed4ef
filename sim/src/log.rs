//! The decision log: what the simulator decided, in processing order, as JSON Lines.
//!
//! The checkers read only this (and the trace), so they can judge any run, or any other
//! implementation that writes the same log.

use std::borrow::Cow;
use std::io::{self, BufRead, Write};

use serde::Deserialize;

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passed the rate limiter and entered the queue.
    Admitted,
    /// 429.
    RateLimited,
    /// 503.
    Overloaded,
}

impl Outcome {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Admitted => "admitted",
            Outcome::RateLimited => "rate_limited",
            Outcome::Overloaded => "overloaded",
        }
    }
}

/// Why a request got 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverloadReason {
    /// The queue held `max_queue` jobs.
    QueueFull,
    /// The per-key table was full of live keys.
    TooManyKeys,
}

impl OverloadReason {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OverloadReason::QueueFull => "queue_full",
            OverloadReason::TooManyKeys => "too_many_keys",
        }
    }
}

/// Why the resource gate is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateReason {
    /// Available memory below its threshold.
    LowMemory,
    /// Free disk below its threshold.
    LowDisk,
}

impl GateReason {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GateReason::LowMemory => "low_memory",
            GateReason::LowDisk => "low_disk",
        }
    }
}

/// What started a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The k × interval schedule.
    Schedule,
    /// Disk fuller than the pressure threshold.
    Pressure,
}

impl Trigger {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Pressure => "pressure",
        }
    }
}

/// One line of the decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// The answer to a request.
    Decision {
        /// Virtual µs.
        t_us: u64,
        /// Request id.
        id: u64,
        /// The answer.
        outcome: Outcome,
        /// Why 503.
        reason: Option<OverloadReason>,
        /// 429: exact wait; 503: a hint, if any.
        retry_after_us: Option<u64>,
    },
    /// A queued job started on a worker.
    JobStart {
        /// Virtual µs.
        t_us: u64,
        /// Request id.
        id: u64,
    },
    /// A job ended (and, unless it crashed, removed its files).
    JobEnd {
        /// Virtual µs.
        t_us: u64,
        /// Request id.
        id: u64,
        /// Crashed, leaving its files.
        crashed: bool,
    },
    /// The resource gate changed state.
    Gate {
        /// Virtual µs.
        t_us: u64,
        /// Open after the change.
        open: bool,
        /// Why closed.
        reason: Option<GateReason>,
    },
    /// A sweep ran (logged even when it removed nothing), after its `FileRemoved` lines.
    Sweep {
        /// Virtual µs.
        t_us: u64,
        /// Why it ran.
        trigger: Trigger,
        /// It removed files older than this.
        older_than_us: u64,
        /// Pressure sweeps: bytes it aimed to free.
        byte_goal: Option<u64>,
        /// Files it removed.
        files_removed: u64,
        /// Their declared bytes.
        bytes_freed: u64,
    },
    /// A job stage wrote its files (mtime = `t_us`).
    FilesWritten {
        /// Virtual µs.
        t_us: u64,
        /// Request id.
        id: u64,
        /// Stage index.
        stage: u32,
        /// Files written.
        files: u32,
        /// Their declared bytes.
        bytes: u64,
    },
    /// A sweep removed this file (listed before its `Sweep` line).
    FileRemoved {
        /// Virtual µs.
        t_us: u64,
        /// The job that wrote it.
        id: u64,
        /// Its index among the job's files.
        file: u32,
    },
    /// A memory reading from the trace.
    Memory {
        /// Virtual µs.
        t_us: u64,
        /// Available bytes.
        available_bytes: u64,
    },
    /// A background disk reading from the trace.
    Disk {
        /// Virtual µs.
        t_us: u64,
        /// Used bytes besides temp files.
        used_bytes: u64,
    },
}

impl Record {
    /// The record's virtual time.
    pub fn t_us(&self) -> u64 {
        match *self {
            Record::Decision { t_us, .. }
            | Record::JobStart { t_us, .. }
            | Record::JobEnd { t_us, .. }
            | Record::Gate { t_us, .. }
            | Record::Sweep { t_us, .. }
            | Record::FilesWritten { t_us, .. }
            | Record::FileRemoved { t_us, .. }
            | Record::Memory { t_us, .. }
            | Record::Disk { t_us, .. } => t_us,
        }
    }

    /// Writes the record as one JSON line, without allocating.
    pub fn write_json<W: Write>(&self, out: &mut W) -> io::Result<()> {
        match *self {
            Record::Decision {
                t_us,
                id,
                outcome,
                reason,
                retry_after_us,
            } => {
                write!(
                    out,
                    "{{\"t_us\":{t_us},\"id\":{id},\"event\":\"decision\",\"outcome\":\"{}\",\"reason\":",
                    outcome.as_str()
                )?;
                match reason {
                    Some(r) => write!(out, "\"{}\"", r.as_str())?,
                    None => out.write_all(b"null")?,
                }
                out.write_all(b",\"retry_after_us\":")?;
                match retry_after_us {
                    Some(r) => write!(out, "{r}}}")?,
                    None => out.write_all(b"null}")?,
                }
                out.write_all(b"\n")
            }
            Record::JobStart { t_us, id } => {
                writeln!(
                    out,
                    "{{\"t_us\":{t_us},\"id\":{id},\"event\":\"job_start\"}}"
                )
            }
            Record::JobEnd { t_us, id, crashed } => writeln!(
                out,
                "{{\"t_us\":{t_us},\"id\":{id},\"event\":\"job_end\",\"crashed\":{crashed}}}"
            ),
            Record::Gate { t_us, open, reason } => {
                write!(
                    out,
                    "{{\"t_us\":{t_us},\"event\":\"gate\",\"open\":{open},\"reason\":"
                )?;
                match reason {
                    Some(r) => writeln!(out, "\"{}\"}}", r.as_str()),
                    None => writeln!(out, "null}}"),
                }
            }
            Record::Sweep {
                t_us,
                trigger,
                older_than_us,
                byte_goal,
                files_removed,
                bytes_freed,
            } => {
                write!(
                    out,
                    "{{\"t_us\":{t_us},\"event\":\"sweep\",\"trigger\":\"{}\",\"older_than_us\":{older_than_us},\"byte_goal\":",
                    trigger.as_str()
                )?;
                match byte_goal {
                    Some(g) => write!(out, "{g}")?,
                    None => out.write_all(b"null")?,
                }
                writeln!(
                    out,
                    ",\"files_removed\":{files_removed},\"bytes_freed\":{bytes_freed}}}"
                )
            }
            Record::FilesWritten {
                t_us,
                id,
                stage,
                files,
                bytes,
            } => writeln!(
                out,
                "{{\"t_us\":{t_us},\"id\":{id},\"event\":\"files_written\",\"stage\":{stage},\"files\":{files},\"bytes\":{bytes}}}"
            ),
            Record::FileRemoved { t_us, id, file } => writeln!(
                out,
                "{{\"t_us\":{t_us},\"id\":{id},\"event\":\"file_removed\",\"file\":{file}}}"
            ),
            Record::Memory {
                t_us,
                available_bytes,
            } => writeln!(
                out,
                "{{\"t_us\":{t_us},\"event\":\"memory\",\"available_bytes\":{available_bytes}}}"
            ),
            Record::Disk { t_us, used_bytes } => writeln!(
                out,
                "{{\"t_us\":{t_us},\"event\":\"disk\",\"used_bytes\":{used_bytes}}}"
            ),
        }
    }
}

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
            let limit = crate::trace::MAX_LINE_BYTES as u64;
            if io::Read::take(&mut self.input, limit).read_line(&mut self.buf)? == 0 {
                return Ok(None);
            }
            self.line += 1;
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            let line = self.line;
            let bad = |reason: String| LogError::Malformed { line, reason };
            let raw: RawRecord<'_> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
            let need = |v: Option<u64>, f: &str| v.ok_or_else(|| bad(format!("missing `{f}`")));
            let t_us = need(raw.t_us, "t_us")?;
            let event = raw
                .event
                .as_deref()
                .ok_or_else(|| bad("missing `event`".into()))?;
            let rec = match event {
                "decision" => {
                    let outcome = match raw.outcome.as_deref() {
                        Some("admitted") => Outcome::Admitted,
                        Some("rate_limited") => Outcome::RateLimited,
                        Some("overloaded") => Outcome::Overloaded,
                        other => return Err(bad(format!("bad `outcome` {other:?}"))),
                    };
                    let reason = match raw.reason.as_deref() {
                        None => None,
                        Some("queue_full") => Some(OverloadReason::QueueFull),
                        Some("too_many_keys") => Some(OverloadReason::TooManyKeys),
                        Some(other) => return Err(bad(format!("unknown `reason` {other:?}"))),
                    };
                    Record::Decision {
                        t_us,
                        id: need(raw.id, "id")?,
                        outcome,
                        reason,
                        retry_after_us: raw.retry_after_us,
                    }
                }
                "job_start" => Record::JobStart {
                    t_us,
                    id: need(raw.id, "id")?,
                },
                "job_end" => Record::JobEnd {
                    t_us,
                    id: need(raw.id, "id")?,
                    crashed: raw.crashed.ok_or_else(|| bad("missing `crashed`".into()))?,
                },
                "gate" => Record::Gate {
                    t_us,
                    open: raw.open.ok_or_else(|| bad("missing `open`".into()))?,
                    reason: match raw.reason.as_deref() {
                        None => None,
                        Some("low_memory") => Some(GateReason::LowMemory),
                        Some("low_disk") => Some(GateReason::LowDisk),
                        Some(other) => return Err(bad(format!("unknown gate `reason` {other:?}"))),
                    },
                },
                "sweep" => Record::Sweep {
                    t_us,
                    trigger: match raw.trigger.as_deref() {
                        Some("schedule") => Trigger::Schedule,
                        Some("pressure") => Trigger::Pressure,
                        other => return Err(bad(format!("bad `trigger` {other:?}"))),
                    },
                    older_than_us: need(raw.older_than_us, "older_than_us")?,
                    byte_goal: raw.byte_goal,
                    files_removed: need(raw.files_removed, "files_removed")?,
                    bytes_freed: need(raw.bytes_freed, "bytes_freed")?,
                },
                "files_written" => Record::FilesWritten {
                    t_us,
                    id: need(raw.id, "id")?,
                    stage: raw.stage.ok_or_else(|| bad("missing `stage`".into()))?,
                    files: raw.files.ok_or_else(|| bad("missing `files`".into()))?,
                    bytes: need(raw.bytes, "bytes")?,
                },
                "file_removed" => Record::FileRemoved {
                    t_us,
                    id: need(raw.id, "id")?,
                    file: raw.file.ok_or_else(|| bad("missing `file`".into()))?,
                },
                "memory" => Record::Memory {
                    t_us,
                    available_bytes: need(raw.available_bytes, "available_bytes")?,
                },
                "disk" => Record::Disk {
                    t_us,
                    used_bytes: need(raw.used_bytes, "used_bytes")?,
                },
                other => return Err(bad(format!("unknown `event` {other:?}"))),
            };
            return Ok(Some(rec));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_round_trips() {
        let recs = [
            Record::Decision {
                t_us: 1,
                id: 2,
                outcome: Outcome::Admitted,
                reason: None,
                retry_after_us: None,
            },
            Record::Decision {
                t_us: 1,
                id: 3,
                outcome: Outcome::RateLimited,
                reason: None,
                retry_after_us: Some(9),
            },
            Record::Decision {
                t_us: 1,
                id: 4,
                outcome: Outcome::Overloaded,
                reason: Some(OverloadReason::QueueFull),
                retry_after_us: None,
            },
            Record::JobStart { t_us: 2, id: 2 },
            Record::JobEnd {
                t_us: 3,
                id: 2,
                crashed: true,
            },
            Record::Gate {
                t_us: 4,
                open: false,
                reason: Some(GateReason::LowDisk),
            },
            Record::Gate {
                t_us: 5,
                open: true,
                reason: None,
            },
            Record::FilesWritten {
                t_us: 5,
                id: 2,
                stage: 1,
                files: 4,
                bytes: 100,
            },
            Record::FileRemoved {
                t_us: 6,
                id: 2,
                file: 3,
            },
            Record::Sweep {
                t_us: 6,
                trigger: Trigger::Pressure,
                older_than_us: 7,
                byte_goal: Some(8),
                files_removed: 1,
                bytes_freed: 25,
            },
            Record::Sweep {
                t_us: 6,
                trigger: Trigger::Schedule,
                older_than_us: 7,
                byte_goal: None,
                files_removed: 0,
                bytes_freed: 0,
            },
            Record::Memory {
                t_us: 7,
                available_bytes: 1,
            },
            Record::Disk {
                t_us: 7,
                used_bytes: 2,
            },
        ];
        let mut out = Vec::new();
        for r in &recs {
            r.write_json(&mut out).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines()
                .next()
                .unwrap()
                .contains("\"reason\":null,\"retry_after_us\":null")
        );
        let mut reader = LogReader::new(text.as_bytes());
        for r in &recs {
            assert_eq!(reader.next_record().unwrap().as_ref(), Some(r));
        }
        assert!(reader.next_record().unwrap().is_none());
    }

    #[test]
    fn malformed_log_names_the_line() {
        let text =
            "{\"t_us\":1,\"event\":\"job_start\",\"id\":1}\n{\"t_us\":1,\"event\":\"nope\"}\n";
        let mut reader = LogReader::new(text.as_bytes());
        reader.next_record().unwrap();
        let e = reader.next_record().unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
