//! Invariant 2, no false 429: a 429 is what the rate stages, asked in their order
//! (`backstop_core::model::rate_stages`: the global window first, then the client's
//! own, whose refusal does not charge the global one), say at its instant, with the
//! exact `retry_after`.

use backstop_core::RateScope;
use backstop_core::model::{Refused, rate_stages};

use super::findings::{Findings, Invariant};
use super::passes::{Passes, ns, us};

/// A 429 at `t_us` for a request of client `key`, saying `retry_after_us`.
pub(crate) fn refused(
    found: &mut Findings,
    passes: &Passes,
    t_us: u64,
    key: Option<u32>,
    retry_after_us: Option<u64>,
) {
    let now_ns = ns(t_us);
    let client = passes.client(key.as_ref());
    let message = match rate_stages(&passes.shared, client, now_ns) {
        Err(Refused::RateLimited { wait_ns, scope }) => {
            let exact = us(wait_ns);
            if retry_after_us == Some(exact) {
                return;
            }
            let which = if scope == RateScope::Global {
                ""
            } else {
                "per-client "
            };
            format!("{which}429 retry_after_us is {retry_after_us:?}, exact is {exact}")
        }
        Err(other) => format!("429 where the rate stages say {other:?}"),
        Ok(()) => match client {
            Some((clients, key)) => {
                let n = clients.window(key).map_or(0, |w| w.in_window(now_ns));
                let limit = clients.shape(key).0;
                format!(
                    "429 with {n} passes in client key #{key}'s window (limit {limit}) and room in the global one"
                )
            }
            None => format!(
                "429 with only {} passes in the window, limit {}",
                passes.shared.in_window(now_ns),
                passes.shared.limit()
            ),
        },
    };
    found.fail(Invariant::NoFalse429, t_us, message);
}
