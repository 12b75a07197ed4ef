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

/// Under loom there is no 128-bit atomic; a loom mutex models one exactly: each
/// operation is one indivisible step, and loom explores every order of those steps.
/// This never compiles into a real build.
#[cfg(loom)]
mod pair {
    use loom::sync::Mutex;
    use loom::sync::atomic::Ordering;

    #[derive(Debug)]
    pub(crate) struct AtomicPair(Mutex<(u64, u64)>);

    impl AtomicPair {
        pub(crate) fn new(hi: u64, lo: u64) -> Self {
            AtomicPair(Mutex::new((hi, lo)))
        }

        pub(crate) fn is_lock_free() -> bool {
            true
        }

        pub(crate) fn load(&self, _order: Ordering) -> (u64, u64) {
            *self.0.lock().unwrap()
        }

        pub(crate) fn compare_exchange(
            &self,
            current: (u64, u64),
            new: (u64, u64),
            _success: Ordering,
            _failure: Ordering,
        ) -> Result<(u64, u64), (u64, u64)> {
            let mut guard = self.0.lock().unwrap();
            if *guard == current {
                *guard = new;
                Ok(current)
            } else {
                Err(*guard)
            }
        }
    }
}
