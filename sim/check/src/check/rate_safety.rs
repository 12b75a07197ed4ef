//! Invariant 1, rate safety: no window holds more than its limit of passes, the global
//! one nor (with the per-client stage) any client's. Every request the rate stages
//! passed counts, the ones the queue then refused too.

use super::findings::{Findings, Invariant};
use super::passes::{Passes, ns, us};

/// A request passed the rate stages at `t_us`: it counts in the global window and its
/// client's, each of which must have had room for it.
pub(crate) fn passed(found: &mut Findings, passes: &mut Passes, t_us: u64, key: Option<u32>) {
    if let Err(wait_ns) = passes.shared.record(ns(t_us)) {
        let (w, limit) = (us(passes.shared.window_ns()), passes.shared.limit());
        // The rule waits for the `limit`-th pass before this one, still in the window.
        let oldest = us(ns(t_us).saturating_add(wait_ns)).saturating_sub(w);
        let n = limit as u64 + 1;
        let since = t_us.saturating_sub(w);
        found.fail(Invariant::RateSafety, t_us, {
            format!("{n} requests passed the rate limiter in ({since}, {t_us}] (oldest at {oldest}), limit {limit}")
        });
    }
    let (Some(clients), Some(key)) = (&mut passes.clients, key) else {
        return;
    };
    if clients.record(&key, ns(t_us)).is_err() {
        let (limit, w) = clients.shape(&key);
        let (n, since) = (limit as u64 + 1, t_us.saturating_sub(us(w)));
        found.fail(Invariant::RateSafety, t_us, {
            format!("{n} requests of client key #{key} passed its limit in ({since}, {t_us}], limit {limit}")
        });
    }
}
