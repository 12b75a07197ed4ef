//! The service as the log tells it: the jobs waiting and running, the gate, the
//! readings, the temp files present. Every checker judges a record against this state
//! as it was before the record; the dispatcher then applies the record.

use std::collections::{BTreeMap, VecDeque};

use crate::layout::{file_bytes, stage_files};
use crate::trace::Request;

/// What an admitted request asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobSpec {
    pub(crate) id: u64,
    pub(crate) job_us: u64,
    pub(crate) files: u32,
    pub(crate) bytes: u64,
}

impl JobSpec {
    pub(crate) fn of(request: &Request) -> Self {
        JobSpec {
            id: request.id,
            job_us: request.job_us,
            files: request.files,
            bytes: request.bytes,
        }
    }
}

/// A started job.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Running {
    pub(crate) spec: JobSpec,
    pub(crate) start_us: u64,
}

/// A temp file present: when it was written and its declared size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TempFile {
    pub(crate) mtime_us: u64,
    pub(crate) bytes: u64,
}

/// A removed file: its job, its index and what it was.
pub(crate) type Removed = (u64, u32, TempFile);

#[derive(Debug)]
pub(crate) struct State {
    /// Admitted jobs not yet started, in admission order.
    pub(crate) waiting: VecDeque<JobSpec>,
    pub(crate) running: Vec<Running>,
    pub(crate) gate_open: bool,
    /// The last memory reading (unlimited before the first).
    pub(crate) memory_bytes: Option<u64>,
    /// The last background disk reading.
    pub(crate) background_bytes: u64,
    /// Declared bytes of the temp files present.
    pub(crate) temp_bytes: u64,
    /// The temp files present, by (job, index).
    pub(crate) files: BTreeMap<(u64, u32), TempFile>,
    /// The files the sweep under way removed (its lines come before its `sweep` line).
    pub(crate) removed: Vec<Removed>,
}

impl State {
    /// Nothing queued, running or written; the gate open.
    pub(crate) fn new(job_slots: u32) -> Self {
        State {
            waiting: VecDeque::new(),
            running: Vec::with_capacity(job_slots as usize),
            gate_open: true,
            memory_bytes: None,
            background_bytes: 0,
            temp_bytes: 0,
            files: BTreeMap::new(),
            removed: Vec::new(),
        }
    }

    pub(crate) fn used_disk_bytes(&self) -> u64 {
        self.background_bytes.saturating_add(self.temp_bytes)
    }

    pub(crate) fn free_disk_bytes(&self, capacity_bytes: u64) -> u64 {
        capacity_bytes.saturating_sub(self.used_disk_bytes())
    }

    /// Job `id`, if it runs.
    pub(crate) fn running_job(&self, id: u64) -> Option<Running> {
        self.running.iter().find(|r| r.spec.id == id).copied()
    }

    /// Job `id` starts at `t_us`, wherever it waits (if it does).
    pub(crate) fn start(&mut self, id: u64, t_us: u64) {
        if let Some(pos) = self.waiting.iter().position(|s| s.id == id) {
            let spec = self.waiting.remove(pos).expect("position is in range");
            self.running.push(Running {
                spec,
                start_us: t_us,
            });
        }
    }

    /// Job `id` ends; a clean end removes whatever of its files the sweeps left.
    pub(crate) fn end(&mut self, id: u64, crashed: bool) {
        let Some(pos) = self.running.iter().position(|r| r.spec.id == id) else {
            return;
        };
        self.running.swap_remove(pos);
        if crashed {
            return;
        }
        let gone: Vec<_> = self
            .files
            .range((id, 0)..=(id, u32::MAX))
            .map(|(k, f)| (*k, f.bytes))
            .collect();
        for (k, b) in gone {
            self.files.remove(&k);
            self.temp_bytes -= b;
        }
    }

    /// Stage `stage` of running job `job` writes its files at `t_us`, as the layout
    /// says.
    pub(crate) fn write_stage(&mut self, job: &Running, stages: u32, stage: u32, t_us: u64) {
        let spec = job.spec;
        for i in stage_files(spec.files, stages, stage) {
            let bytes = file_bytes(spec.files, spec.bytes, i);
            let file = TempFile {
                mtime_us: t_us,
                bytes,
            };
            self.files.insert((spec.id, i), file);
            self.temp_bytes += bytes;
        }
    }

    /// File `file` of job `id` is removed by the sweep under way; `false` when it is
    /// not present.
    pub(crate) fn remove_file(&mut self, id: u64, file: u32) -> bool {
        match self.files.remove(&(id, file)) {
            Some(f) => {
                self.temp_bytes -= f.bytes;
                self.removed.push((id, file, f));
                true
            }
            None => false,
        }
    }
}
