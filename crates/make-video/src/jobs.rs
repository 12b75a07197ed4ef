//! The dispatcher and the jobs it runs: queued jobs start in order, each in a slot of
//! the front door and a workspace of its own.

use std::sync::Arc;
use std::time::Duration;

use backstop_redis::LeaseWatch;
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
    /// Jobs stopped before a stage because their slot's lease was lost (the slot may be
    /// another replica's by then).
    pub lost_lease: Counter,
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
        registry.register(
            "makevideo_jobs_lost_lease",
            "Jobs stopped at a stage because their slot's lease was lost",
            self.lost_lease.clone(),
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
        let lease = D::lease_watch(&permit);
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
            let run = tokio::task::spawn_blocking(move || run_job(id, &config, lease.as_ref()));
            match run.await {
                Ok(Ok(bytes)) => {
                    counts.bytes_written.inc_by(bytes);
                }
                Ok(Err(JobError::LeaseLost { stage, bytes })) => {
                    counts.bytes_written.inc_by(bytes);
                    counts.lost_lease.inc();
                    tracing::warn!(
                        job = id,
                        stage,
                        "job stopped before stage {stage}: its slot's lease was lost"
                    );
                }
                Ok(Err(JobError::Failed(err))) => {
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

/// Why a job ended early.
enum JobError {
    /// Its slot's lease was lost before `stage`: it stopped there, having written
    /// `bytes`.
    LeaseLost { stage: String, bytes: u64 },
    /// The workspace or a stage failed.
    Failed(String),
}

impl From<String> for JobError {
    fn from(err: String) -> Self {
        JobError::Failed(err)
    }
}

/// One job: each stage writes its output into its own directory, works, and is cleaned
/// before the next; the workspace goes when the job ends, however it ends. Before each
/// stage the job looks at its slot's lease (`lease`, when the slot is held in a store):
/// once lost, the slot may be someone else's, so the job stops there.
fn run_job(id: u64, config: &Config, lease: Option<&LeaseWatch>) -> Result<u64, JobError> {
    let name = format!("job-{}-{id}", std::process::id());
    let workspace = JobWorkspace::create(&config.temp_root, &name).map_err(|e| e.to_string())?;
    // A long job's files look old to the sweep; the lock keeps the sweep off them.
    workspace.lock_against_sweeps().map_err(|e| e.to_string())?;
    let mut bytes_written = 0;
    for stage in &config.stages {
        if lease.is_some_and(LeaseWatch::is_lost) {
            return Err(JobError::LeaseLost {
                stage: stage.clone(),
                bytes: bytes_written,
            });
        }
        tracing::debug!(job = id, stage = %stage, "stage started");
        let dir = workspace.stage(stage).map_err(|e| e.to_string())?;
        let size = config.stage_size.bytes();
        let output = vec![0u8; usize::try_from(size).map_err(|e| e.to_string())?];
        std::fs::write(dir.join("output.bin"), &output)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        bytes_written += size;
        std::thread::sleep(config.stage);
        workspace.finish_stage(stage).map_err(|e| e.to_string())?;
    }
    workspace.remove().map_err(|e| e.to_string())?;
    Ok(bytes_written)
}
