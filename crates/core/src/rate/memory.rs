//! What a window remembers, to build another window from: the one type both the ring
//! (`AdmissionRing::remembered`, a reshape or a growth) and the reference model
//! (`backstop_core::model::WindowModel`, feature `model`) hand over.

/// The recorded times a window remembers and a horizon at or after every admission it
/// forgot. See the ring's module docs and [`SlidingWindow`](super::SlidingWindow)'s
/// "Exact under change".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Every admission not in `times_ns` happened at or before this time; `None` when
    /// there were none.
    pub horizon_ns: Option<u64>,
    /// The recorded times of the admissions remembered, oldest first.
    pub times_ns: Vec<u64>,
}

impl Memory {
    /// Only these admissions, none forgotten.
    #[cfg(any(test, feature = "model"))]
    pub fn of(times_ns: &[u64]) -> Self {
        Memory {
            horizon_ns: None,
            times_ns: times_ns.to_vec(),
        }
    }
}
