//! [`Record`]: one line of the decision log, and how it is written.

use std::io::{self, Write};

use super::vocab::{GateReason, Outcome, OverloadReason, Trigger};

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
            } => write_decision(out, (t_us, id), outcome, reason, retry_after_us),
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
            } => write_sweep(
                out,
                t_us,
                trigger,
                older_than_us,
                byte_goal,
                (files_removed, bytes_freed),
            ),
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

fn write_decision<W: Write>(
    out: &mut W,
    (t_us, id): (u64, u64),
    outcome: Outcome,
    reason: Option<OverloadReason>,
    retry_after_us: Option<u64>,
) -> io::Result<()> {
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

fn write_sweep<W: Write>(
    out: &mut W,
    t_us: u64,
    trigger: Trigger,
    older_than_us: u64,
    byte_goal: Option<u64>,
    (files_removed, bytes_freed): (u64, u64),
) -> io::Result<()> {
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
