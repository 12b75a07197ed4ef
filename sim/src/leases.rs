//! [`Leases`]: when the live tickets and permits were taken, for doors that lose them
//! after their lease (`SimDoor::max_hold`): a store
//! renews leases on real time, which a replay outruns.

use std::collections::BTreeMap;

/// When the live holds were taken; nothing is kept for doors whose holds never expire.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    max_ns: Option<u64>,
    /// Take time → how many live holds were taken then.
    taken: BTreeMap<u64, u32>,
}

impl Leases {
    /// Holds that expire `max_ns` after they are taken (`None`: never).
    pub(crate) fn new(max_ns: Option<u64>) -> Self {
        Leases {
            max_ns,
            taken: BTreeMap::new(),
        }
    }

    /// A hold taken at `now_ns`.
    #[inline]
    pub(crate) fn take(&mut self, now_ns: u64) {
        if self.max_ns.is_some() {
            *self.taken.entry(now_ns).or_default() += 1;
        }
    }

    /// A hold taken at `since_ns` is given back.
    #[inline]
    pub(crate) fn release(&mut self, since_ns: u64) {
        if self.max_ns.is_some() {
            if let Some(n) = self.taken.get_mut(&since_ns) {
                *n -= 1;
                if *n == 0 {
                    self.taken.remove(&since_ns);
                }
            }
        }
    }

    /// The oldest live hold and the lease, if that hold has outlived it at `now_ns` (a
    /// store prunes a lease whose deadline is at or before its `now`).
    #[inline]
    pub(crate) fn outlived(&self, now_ns: u64) -> Option<(u64, u64)> {
        let max_ns = self.max_ns?;
        let (&oldest, _) = self.taken.first_key_value()?;
        (now_ns >= oldest.saturating_add(max_ns)).then_some((oldest, max_ns))
    }
}
