//! A run as the options ask for it: the replicas' limits in process or in a shared
//! store, chosen here, and the replay through them. The engine never names the store.

use std::io::Write;
use std::num::NonZeroU32;
use std::path::PathBuf;

use backstop_sim_check::trace::EventSource;

use crate::config::SimConfig;
use crate::error::SimError;
use crate::replay::{Progress, Replay, replay};
use crate::report::RunOutput;
use crate::service::Service;
use crate::store::{StoreRun, validate_url};

/// Everything a run needs besides the config and the trace.
pub struct RunOptions<'a> {
    /// Where to write the decision log (buffer it).
    pub decisions_out: Option<&'a mut dyn Write>,
    /// Parent of the scratch directory (the system temp dir when `None`).
    pub scratch_parent: Option<PathBuf>,
    /// Called every 65 536 trace events.
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
    /// Describes the input in the report (a path or a scenario).
    pub source_label: String,
    /// How many replicas of the front door share the traffic (round-robin in arrival
    /// order). More than one needs [`store`](Self::store): replicas that keep their
    /// limits in process would each enforce the whole limit.
    pub replicas: NonZeroU32,
    /// The store the replicas share (`redis://…`), or `None` for in-process limits.
    pub store: Option<String>,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions {
            decisions_out: None,
            scratch_parent: None,
            progress: None,
            source_label: String::new(),
            replicas: NonZeroU32::MIN,
            store: None,
        }
    }
}

/// Why `replicas` and `store` cannot run together, if they cannot.
///
/// # Errors
///
/// A one-line reason.
pub fn validate_replicas(replicas: NonZeroU32, store: Option<&str>) -> Result<(), String> {
    match store {
        None if replicas.get() > 1 => Err(format!(
            "--replicas {replicas} needs --store URL: replicas without a shared store would each \
             keep their own limits ({replicas} × the rate limit, queue and slots)"
        )),
        None => Ok(()),
        Some(url) => validate_url(url),
    }
}

/// Replays `source` through the modelled service under `config`, checking every
/// invariant as it goes: one in-process replica, or `opts.replicas` sharing the store
/// at `opts.store`.
///
/// ```
/// use backstop_sim::config::SimConfig;
/// use backstop_sim::run::{RunOptions, run};
/// use backstop_sim_check::trace::TraceReader;
/// let trace = "{\"t_us\":0,\"type\":\"request\",\"id\":1,\"job_us\":1000,\"files\":2,\"bytes\":10}\n\
///              {\"t_us\":0,\"type\":\"request\",\"id\":2,\"job_us\":1000}\n";
/// let mut config = SimConfig::default();
/// config.limits.rate.limit = 1;
/// let out = run(&config, TraceReader::new(trace.as_bytes()), RunOptions::default())?;
/// assert_eq!(out.report.sim.admitted, 1);
/// assert_eq!(out.report.sim.rate_limited, 1);
/// assert_eq!(out.check.violations, 0);
/// # Ok::<(), backstop_sim::error::SimError>(())
/// ```
///
/// # Errors
///
/// The configuration or the replicas are invalid, the store cannot be used, or the
/// replay failed.
pub fn run<S: EventSource>(
    config: &SimConfig,
    source: S,
    opts: RunOptions<'_>,
) -> Result<RunOutput, SimError> {
    config.validate()?;
    validate_replicas(opts.replicas, opts.store.as_deref()).map_err(SimError::Replicas)?;
    let RunOptions {
        decisions_out,
        scratch_parent,
        progress,
        source_label,
        replicas,
        store,
    } = opts;
    let options = Replay {
        decisions_out,
        scratch_parent,
        progress,
        source_label,
    };
    match store {
        None => {
            let service = Service::new(&config.limits, config.per_key.as_ref())?;
            replay(config, source, options, service)
        }
        Some(url) => {
            let store = StoreRun::open(config, &url, replicas)?;
            let out = store
                .service()
                .and_then(|s| replay(config, source, options, s));
            store.close(out)
        }
    }
}
