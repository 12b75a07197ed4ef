//! The checkers' parameters from a simulator configuration.

use backstop_core::ByteSize;
use backstop_sim_check::check::CheckParams;

use crate::config::SimConfig;

impl From<&SimConfig> for CheckParams {
    fn from(c: &SimConfig) -> Self {
        let l = &c.limits;
        let r = &l.resources;
        // A disabled gate never closes: no threshold to fall below, none to clear.
        let gate = |size: ByteSize| if r.enabled { size.bytes() } else { 0 };
        CheckParams {
            rate_limit: l.rate.limit,
            rate_window_us: c.rate_window_us(),
            // Simulated requests are of the normal class: the critical reserve is not theirs.
            max_queue: l.queue.max - l.queue.critical_reserve,
            job_slots: l.jobs.max,
            stages: c.disk.stages,
            min_memory_bytes: gate(r.min_available_memory),
            memory_margin_bytes: gate(r.memory_margin),
            min_disk_bytes: gate(r.min_free_disk),
            disk_margin_bytes: gate(r.disk_margin),
            capacity_bytes: c.disk.capacity_bytes,
            pressure_bytes: c.pressure_bytes(),
            per_key: c
                .per_key
                .as_ref()
                .map(|k| (k.limit, k.window.as_micros() as u64)),
        }
    }
}
