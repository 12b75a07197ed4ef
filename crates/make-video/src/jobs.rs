//! The dispatcher and the jobs it runs: queued jobs start in order, each in a slot of
//! the front door and a workspace of its own.

use std::sync::Arc;
use std::time::Duration;

use backstop_sweep::JobWorkspace;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::config::Config;
use crate::door::Door;

/// How often a dispatcher blocked by the resource gate looks again.
const GATE_RETRY: Duration = Duration::from_millis(100);

/// A job waiting for a slot: its id and its place in the queue.
pub(crate) struct QueuedJob<T> {
    pub(crate) id: u64,
    pub(crate) ticket: T,
}

/// What the jobs did, beyond the admission's own counters: prometheus-client counters,
/// registered in the service's registry beside backstop-core's.
#[derive(Debug, Default)]
pub struct JobCounts {
    /// Jobs whose workspace or stages failed.
    pub failed: Counter,
    /// Bytes the jobs wrote.
    pub bytes_written: Counter,
}

impl JobCounts {
    /// Adds these counters to `registry` as `makevideo_*` families.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "makevideo_jobs_failed",
            "Jobs whose workspace or stages failed",
            self.failed.clone(),
        );
        registry.register(
            "makevideo_bytes_written",
            "Bytes the jobs wrote to their workspaces",
            self.bytes_written.clone(),
        );
    }
}

/// Starts queued jobs in order, each as soon as [`Admission::start_job`] allows.
pub(crate) async fn dispatch<D: Door>(
    admission: Arc<D>,
    mut waiting: mpsc::Receiver<QueuedJob<D::Ticket>>,
    config: Arc<Config>,
    job_gate: Option<Arc<Semaphore>>,
    counts: Arc<JobCounts>,
) {
    let slot_freed = Arc::new(Notify::new());
    while let Some(QueuedJob { id, mut ticket }) = waiting.recv().await {
        let permit = loop {
            // Registered before the attempt, so a job finishing in between is not missed.
            let freed = slot_freed.notified();
            match admission.start_job(ticket).await {
                Ok(permit) => break permit,
                Err((back, _why)) => {
                    ticket = back;
                    // A slot frees when a job ends; a closed resource gate has no event
                    // to wait for, so look again after a while.
                    tokio::select! {
                        () = freed => {}
                        () = tokio::time::sleep(GATE_RETRY) => {}
                    }
                }
            }
        };
        let config = Arc::clone(&config);
        let job_gate = job_gate.clone();
        let counts = Arc::clone(&counts);
        let slot_freed = Arc::clone(&slot_freed);
        tokio::spawn(async move {
            if let Some(gate) = job_gate {
                // A closed semaphore lets the job run.
                if let Ok(held) = gate.acquire().await {
                    held.forget();
                }
            }
            let run = tokio::task::spawn_blocking(move || run_job(id, &config));
            match run.await {
                Ok(Ok(bytes)) => {
                    counts.bytes_written.inc_by(bytes);
                }
                Ok(Err(err)) => {
                    tracing::warn!(job = id, %err, "job failed");
                    counts.failed.inc();
                }
                Err(_panicked) => {
                    tracing::warn!(job = id, "job panicked");
                    counts.failed.inc();
                }
            }
            drop(permit); // the slot is free...
            slot_freed.notify_one(); // ...and the dispatcher hears of it
        });
    }
}

/// One job: each stage writes its output into its own directory, works, and is cleaned
/// before the next; the workspace goes when the job ends, however it ends.
fn run_job(id: u64, config: &Config) -> Result<u64, String> {
    let name = format!("job-{}-{id}", std::process::id());
    let workspace = JobWorkspace::create(&config.temp_root, &name).map_err(|e| e.to_string())?;
    // A long job's files look old to the sweep; the lock keeps the sweep off them.
    workspace.lock_against_sweeps().map_err(|e| e.to_string())?;
    let mut bytes_written = 0;
    for stage in &config.stages {
        let dir = workspace.stage(stage).map_err(|e| e.to_string())?;
        let output = vec![0u8; config.stage_bytes as usize];
        std::fs::write(dir.join("output.bin"), &output)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        bytes_written += config.stage_bytes;
        std::thread::sleep(Duration::from_millis(config.stage_ms));
        workspace.finish_stage(stage).map_err(|e| e.to_string())?;
    }
    workspace.remove().map_err(|e| e.to_string())?;
    Ok(bytes_written)
}
