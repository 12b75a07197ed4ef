//! The event loop: trace events, job events and sweeps taken earliest first, at one
//! instant job events, then sweeps, then trace events (see `sim/README.md`), each handed
//! to the engine.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use backstop_sim_check::log::Trigger;
use backstop_sim_check::trace::{Event, EventSource, Request};

use crate::config::SimConfig;
use crate::engine::Engine;
use crate::error::SimError;
use crate::report::RunOutput;
use crate::service::{Executor, Service, SimDoor};

/// Progress of a run, reported every few thousand events.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Virtual time reached, µs.
    pub t_us: u64,
    /// Trace events consumed.
    pub events: u64,
}

/// What a replay writes and where, besides the config, the trace and the service.
#[derive(Default)]
pub struct Replay<'a> {
    /// Where to write the decision log (buffer it).
    pub decisions_out: Option<&'a mut dyn Write>,
    /// Parent of the scratch directory (the system temp dir when `None`).
    pub scratch_parent: Option<PathBuf>,
    /// Called every 65 536 trace events.
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
    /// Describes the input in the report (a path or a scenario).
    pub source_label: String,
}

/// Client names, resolved once per interned key and only when the per-client stage is
/// on.
struct KeyNames {
    on: bool,
    names: Vec<String>,
}

impl KeyNames {
    /// The name of the request's client, if the per-client stage judges it.
    fn of<S: EventSource>(&mut self, source: &S, event: &Event) -> Option<&str> {
        let Event::Request(Request { key: Some(k), .. }) = *event else {
            return None;
        };
        if !self.on {
            return None;
        }
        let k = k as usize;
        while self.names.len() <= k {
            let i = self.names.len() as u32;
            let name = source.key_name(i).unwrap_or_else(|| format!("key-{i}"));
            self.names.push(name);
        }
        Some(self.names[k].as_str())
    }
}

/// Replays `source` through `service` under `config`, checking every invariant as it
/// goes. The service's replicas must be on the clock it was built with; tests build
/// several handles on one shared in-process door with it, `run::run` the service
/// `config` and its options ask for.
///
/// # Errors
///
/// The trace is malformed, the scratch directory or the decision log failed, or a
/// replica could not answer.
pub fn replay<S: EventSource, D: SimDoor, X: Executor>(
    config: &SimConfig,
    mut source: S,
    opts: Replay<'_>,
    service: Service<D, X>,
) -> Result<RunOutput, SimError> {
    let wall_start = Instant::now();
    let Replay {
        decisions_out,
        scratch_parent,
        mut progress,
        source_label,
    } = opts;
    let mut e = Engine::new(config, service, decisions_out, scratch_parent)?;
    // The gate is judged once before anything happens: a disk smaller than the free-space
    // minimum is short from t = 0, before the first sweep or reading.
    e.update_gate(0)?;
    let interval_us = config.sweep.interval.as_micros() as u64;
    let mut next_sweep_us = 0u64;
    let mut next_trace = source.next_event()?;
    let (mut events, mut now_us) = (0u64, 0u64);
    let mut keys = KeyNames {
        on: config.per_key.is_some(),
        names: Vec::new(),
    };
    loop {
        let internal = e.next_internal_us();
        let horizon = match (internal, next_trace.as_ref().map(Event::t_us)) {
            (None, None) => break,
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
        };
        // Earliest first; at one instant job events, then sweeps, then trace events.
        // Sweeps run only while something else is pending (a run ends when nothing is).
        if next_sweep_us < horizon || (next_sweep_us == horizon && internal != Some(horizon)) {
            now_us = next_sweep_us;
            e.sweep(now_us, Trigger::Schedule)?;
            e.pressure_check(now_us)?;
            next_sweep_us = next_sweep_us.saturating_add(interval_us);
        } else if internal == Some(horizon) {
            now_us = e.internal_event()?;
            e.pressure_check(now_us)?;
        } else {
            let ev = next_trace.take().expect("horizon came from the trace");
            now_us = ev.t_us();
            e.trace_event(ev, keys.of(&source, &ev))?;
            e.pressure_check(now_us)?;
            next_trace = source.next_event()?;
            events += 1;
            if let Some(p) = progress.as_mut().filter(|_| events & 0xFFFF == 0) {
                p(Progress {
                    t_us: now_us,
                    events,
                });
            }
        }
    }
    e.finish(&source_label, now_us, wall_start, events)
}
