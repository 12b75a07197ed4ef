//! The requests that passed the rate stages, as the log tells them: the global window
//! and, with the per-client stage, each client's, in the reference models of
//! `backstop_core::model`. Times are nanoseconds there, microseconds in the log.

use backstop_core::model::{KeyedModel, WindowModel};

use super::params::CheckParams;

/// A trace time in the nanoseconds of the window model. Exact: trace times are below
/// `MAX_TIME_US`, under `u64::MAX / 1000` (asserted with the trace's events); saturating
/// for a hand-made log beyond it, which then fails its checks rather than panicking.
pub(crate) fn ns(t_us: u64) -> u64 {
    t_us.saturating_mul(1_000)
}

/// A model time or wait back in trace microseconds: exact for what [`ns`] gave.
pub(crate) fn us(t_ns: u64) -> u64 {
    t_ns / 1_000
}

#[derive(Debug)]
pub(crate) struct Passes {
    /// The global window.
    pub(crate) shared: WindowModel,
    /// Per-client windows, when the per-client stage is on (their table is never full:
    /// the checkers do not judge `too_many_keys`).
    pub(crate) clients: Option<KeyedModel<u32>>,
}

impl Passes {
    pub(crate) fn new(params: &CheckParams) -> Self {
        Passes {
            shared: WindowModel::new(params.rate_limit, ns(params.rate_window_us)),
            clients: params
                .per_key
                .map(|(limit, w)| KeyedModel::new((limit, ns(w)), usize::MAX)),
        }
    }

    /// The per-client windows and `key`, when this request went through that stage.
    pub(crate) fn client<'a>(
        &'a self,
        key: Option<&'a u32>,
    ) -> Option<(&'a KeyedModel<u32>, &'a u32)> {
        self.clients.as_ref().zip(key)
    }
}
