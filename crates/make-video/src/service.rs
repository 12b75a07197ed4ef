//! The running service: the router behind the admission layer, with the dispatcher,
//! the sweep schedule and the resource sampler it starts.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::routing::{get, post};
use backstop_core::Admission;
use backstop_core::clock::QuantaClock;
use backstop_core::resources::{Sampler, SysinfoProbe};
use backstop_sweep::{ScheduleHandle, Sweep, SweepSchedule};
use backstop_tower::{AdmissionLayer, KeyBy};
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, mpsc};

use crate::config::Config;
use crate::door::Door;
use crate::handlers::{AppState, health, metrics, queue_job};
use crate::jobs::{JobCounts, dispatch};

/// The running service: its router and the background work behind it. Dropping it stops
/// the sweep schedule and the resource sampler; the dispatcher stops with the runtime.
pub struct MakeVideo<D: Door = Admission<QuantaClock>> {
    router: Router,
    admission: Arc<D>,
    counts: Arc<JobCounts>,
    _schedule: ScheduleHandle,
    _sampler: Option<Sampler>,
}

impl<D: Door> MakeVideo<D> {
    /// Starts the dispatcher, the sweep schedule and (when the gate is enabled) the
    /// resource sampler, on the current tokio runtime. `job_gate`, when given, is a
    /// semaphore every job takes one permit of before its stages run: tests hold
    /// workers busy with it; the binary passes `None`.
    ///
    /// # Errors
    ///
    /// One line saying what could not be started.
    pub fn start(
        admission: Arc<D>,
        config: &Config,
        job_gate: Option<Arc<Semaphore>>,
    ) -> Result<Self, String> {
        config.validate().map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&config.temp_root)
            .map_err(|e| format!("cannot create {}: {e}", config.temp_root.display()))?;
        let schedule =
            SweepSchedule::new(Sweep::new(&config.temp_root).older_than(config.sweep_older_than))
                .every(config.sweep_every)
                .start()
                .map_err(|e| e.to_string())?;
        let sampler = if config.limits.resources.enabled {
            let probe = SysinfoProbe::from_limits(&config.limits.resources);
            Some(
                admission
                    .spawn_sampler(probe)
                    .map_err(|e| format!("cannot start the resource sampler: {e}"))?,
            )
        } else {
            None
        };

        // The queue bound already limits how many jobs wait; the channel only carries
        // them to the dispatcher.
        let (queued, waiting) = mpsc::channel(config.limits.queue.max as usize);
        let counts = Arc::new(JobCounts::default());
        tokio::spawn(dispatch(
            Arc::clone(&admission),
            waiting,
            Arc::new(config.clone()),
            job_gate,
            Arc::clone(&counts),
        ));

        let layer = AdmissionLayer::new(Arc::clone(&admission))
            .hand_over_ticket(true)
            .policy_header_on_success(true);
        // Clients are told apart only when they have budgets of their own.
        let layer = match config.per_client {
            Some(_) => layer.key_by(KeyBy::PeerIp).map_err(|e| e.to_string())?,
            None => layer,
        };
        let mut registry = Registry::default();
        counts.register(&mut registry);
        admission.register(&mut registry);
        schedule.metrics().register(&mut registry);
        let state = Arc::new(AppState {
            admission: Arc::clone(&admission),
            queued,
            next_id: AtomicU64::new(1),
            registry,
        });
        // Admission guards the one route that creates work, through the method router's
        // `route_layer`: a 404 (the router's fallback) or a 405 (`GET /make-video`, the
        // method router's fallback) never reaches the layer, so it neither spends the
        // rate budget nor counts as admitted. `/health` and `/metrics` are not behind it.
        let router = Router::new()
            .route("/make-video", post(queue_job::<D>).route_layer(layer))
            .route("/metrics", get(metrics::<D>))
            .route("/health", get(health::<D>))
            .with_state(state);
        Ok(MakeVideo {
            router,
            admission,
            counts,
            _schedule: schedule,
            _sampler: sampler,
        })
    }

    /// The routes, behind the admission layer.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The shared admission.
    pub fn admission(&self) -> &Arc<D> {
        &self.admission
    }

    /// What the jobs did.
    pub fn counts(&self) -> &Arc<JobCounts> {
        &self.counts
    }
}
