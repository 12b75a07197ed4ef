//! The one place atomics come from: `std` normally, `loom` under `cfg(loom)`.
//!
//! Every atomic, `Arc` and spin hint in this crate is imported from here, so the loom
//! model checker sees every synchronising operation.

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{
    Arc,
    atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};

pub(crate) use pair::AtomicPair;

/// Two `u64`s read and compare-and-swapped as one 128-bit unit.
///
/// The limiter's ring needs (admission number, expiry) to change in one atomic step: a
/// claim and its timestamp must be published together, and a reader must never see half
/// of one pair and half of another.
#[cfg(not(loom))]
mod pair {
    use portable_atomic::AtomicU128;
    use std::sync::atomic::Ordering;

    #[derive(Debug)]
    #[repr(transparent)]
    pub(crate) struct AtomicPair(AtomicU128);

    #[inline(always)]
    fn pack(hi: u64, lo: u64) -> u128 {
        ((hi as u128) << 64) | lo as u128
    }

    #[inline(always)]
    fn unpack(v: u128) -> (u64, u64) {
        ((v >> 64) as u64, v as u64)
    }

    impl AtomicPair {
        pub(crate) fn new(hi: u64, lo: u64) -> Self {
            AtomicPair(AtomicU128::new(pack(hi, lo)))
        }

        /// Whether this platform does it with real 128-bit instructions (CMPXCHG16B on
        /// x86_64, CASP on aarch64) rather than a lock.
        pub(crate) fn is_lock_free() -> bool {
            AtomicU128::is_lock_free()
        }

        #[inline(always)]
        pub(crate) fn load(&self, order: Ordering) -> (u64, u64) {
            unpack(self.0.load(order))
        }

        #[inline(always)]
        pub(crate) fn store(&self, value: (u64, u64), order: Ordering) {
            self.0.store(pack(value.0, value.1), order);
        }

        #[inline(always)]
        pub(crate) fn compare_exchange(
            &self,
            current: (u64, u64),
            new: (u64, u64),
            success: Ordering,
            failure: Ordering,
        ) -> Result<(u64, u64), (u64, u64)> {
            self.0
                .compare_exchange(
                    pack(current.0, current.1),
                    pack(new.0, new.1),
                    success,
                    failure,
                )
                .map(unpack)
                .map_err(unpack)
        }
    }
}

/// Under loom there is no 128-bit atomic. A pair is packed into **one loom `AtomicU64`**
/// (32 bits each), so loom sees every load and CAS with the ordering the ring passes and
/// checks those orderings, not just the interleavings. The loom models use small numbers
/// and times; the packing asserts that they fit. Times keep their two special forms: the
/// seal bit (bit 63, moved to bit 31) and `u64::MAX` ("never"). This never compiles into
/// a real build.
#[cfg(loom)]
mod pair {
    use loom::sync::atomic::{AtomicU64, Ordering};

    const SEAL: u64 = 1 << 63;
    const LOW_SEAL: u64 = 1 << 31;
    const LOW_MAX: u64 = u32::MAX as u64;

    fn pack_time(t: u64) -> u64 {
        match t {
            u64::MAX => LOW_MAX,
            t if t & SEAL != 0 => {
                assert!(t & !SEAL < LOW_SEAL - 1, "loom times must stay small: {t}");
                LOW_SEAL | (t & !SEAL)
            }
            t => {
                assert!(t < LOW_SEAL, "loom times must stay small: {t}");
                t
            }
        }
    }

    fn unpack_time(v: u64) -> u64 {
        match v {
            LOW_MAX => u64::MAX,
            v if v & LOW_SEAL != 0 => SEAL | (v & !LOW_SEAL),
            v => v,
        }
    }

    fn pack((hi, lo): (u64, u64)) -> u64 {
        assert!(hi <= LOW_MAX, "loom numbers must stay small: {hi}");
        (hi << 32) | pack_time(lo)
    }

    fn unpack(v: u64) -> (u64, u64) {
        (v >> 32, unpack_time(v & LOW_MAX))
    }

    #[derive(Debug)]
    pub(crate) struct AtomicPair(AtomicU64);

    impl AtomicPair {
        pub(crate) fn new(hi: u64, lo: u64) -> Self {
            AtomicPair(AtomicU64::new(pack((hi, lo))))
        }

        pub(crate) fn is_lock_free() -> bool {
            true
        }

        pub(crate) fn load(&self, order: Ordering) -> (u64, u64) {
            unpack(self.0.load(order))
        }

        pub(crate) fn store(&self, value: (u64, u64), order: Ordering) {
            self.0.store(pack(value), order);
        }

        pub(crate) fn compare_exchange(
            &self,
            current: (u64, u64),
            new: (u64, u64),
            success: Ordering,
            failure: Ordering,
        ) -> Result<(u64, u64), (u64, u64)> {
            self.0
                .compare_exchange(pack(current), pack(new), success, failure)
                .map(unpack)
                .map_err(unpack)
        }
    }
}
