//! The one place atomics come from: `std` normally, `loom` under `cfg(loom)`.
//!
//! Every atomic, `Arc` and spin hint in this crate is imported from here, so the loom
//! model checker sees every synchronising operation.

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
};

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{
    Arc,
    atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
};

pub(crate) use pair::AtomicPair;

/// Two `u64`s stored and loaded as one 128-bit unit.
///
/// The limiter's ring keeps its shape `(limit, window)` in one: a decision racing a
/// reshape must see the old pair or the new one, never the limit of one and the window of
/// the other. It is loaded on every decision and stored only by a reshape.
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
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            if super::x86::features() & super::x86::VECTOR_LOADS != 0 {
                // A plain load is at least Acquire on x86 (and SeqCst, since x86's
                // SeqCst stores and every CAS here are locked or fenced).
                // SAFETY: `as_ptr` is valid and 16-byte aligned while `self` lives, and
                // `features` saw a CPU whose aligned 16-byte vector loads are atomic.
                return unsafe { super::x86::load(self.0.as_ptr()) };
            }
            unpack(self.0.load(order))
        }

        #[inline(always)]
        pub(crate) fn store(&self, value: (u64, u64), order: Ordering) {
            self.0.store(pack(value.0, value.1), order);
        }
    }
}

/// The pair's 128-bit load inlined on x86_64. `portable-atomic` picks vector loads at run
/// time too, but calls them through a function pointer on every operation (about 0.4 ns
/// per load on the benchmark machine, and an admission makes one). Here the CPU is asked
/// once and the instruction sits inline behind one predictable branch; without it,
/// `portable-atomic` does the work.
#[cfg(all(not(loom), target_arch = "x86_64", not(miri)))]
mod x86 {
    use std::arch::asm;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// Asked the CPU already.
    const KNOWN: u8 = 1;
    /// CMPXCHG16B is there.
    const CMPXCHG16B: u8 = 2;
    /// Aligned 16-byte vector loads are atomic: AVX on Intel and AMD, who document it
    /// (Intel SDM vol. 3A 9.1.1; AMD APM vol. 2 7.3.2). Other vendors are not assumed.
    pub(super) const VECTOR_LOADS: u8 = 4;

    static FEATURES: AtomicU8 = AtomicU8::new(0);

    /// What this CPU offers, asked on the first call.
    #[inline(always)]
    pub(super) fn features() -> u8 {
        // Relaxed: the value is a fact about the CPU; every thread computes the same.
        match FEATURES.load(Ordering::Relaxed) {
            0 => detect(),
            known => known,
        }
    }

    #[cold]
    #[inline(never)]
    fn detect() -> u8 {
        let mut features = KNOWN;
        if std::arch::is_x86_feature_detected!("cmpxchg16b") {
            features |= CMPXCHG16B;
            // Safe to call in newer Rust; `unsafe` for the oldest toolchain supported.
            #[allow(unused_unsafe)]
            // SAFETY: CPUID leaf 0 exists on every x86_64 CPU.
            let vendor = unsafe { std::arch::x86_64::__cpuid(0) };
            let vendor = [vendor.ebx, vendor.edx, vendor.ecx];
            let intel = vendor == [0x756e_6547, 0x4965_6e69, 0x6c65_746e]; // GenuineIntel
            let amd = vendor == [0x6874_7541, 0x6974_6e65, 0x444d_4163]; // AuthenticAMD
            // `is_x86_feature_detected!("avx")` also checks that the OS saves the
            // vector registers (XGETBV).
            if (intel || amd) && std::arch::is_x86_feature_detected!("avx") {
                features |= VECTOR_LOADS;
            }
        }
        // Relaxed: see `features`.
        FEATURES.store(features, Ordering::Relaxed);
        features
    }

    /// `(high, low)` of the 128 bits at `src`, in one atomic load.
    ///
    /// # Safety
    ///
    /// `src` is valid for reads, 16-byte aligned, only ever accessed atomically, and
    /// the CPU has [`VECTOR_LOADS`].
    #[inline(always)]
    pub(super) unsafe fn load(src: *const u128) -> (u64, u64) {
        let (high, low): (u64, u64);
        // SAFETY: the caller's contract: one aligned 16-byte VMOVDQA, which is atomic on
        // this CPU; it only reads `src` and leaves the flags alone.
        unsafe {
            asm!(
                "vmovdqa {v}, xmmword ptr [{src}]",
                "vmovq {low}, {v}",
                "vpextrq {high}, {v}, 1",
                src = in(reg) src,
                v = out(xmm_reg) _,
                low = out(reg) low,
                high = out(reg) high,
                options(nostack, preserves_flags, readonly),
            );
        }
        (high, low)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use portable_atomic::AtomicU128;

        #[test]
        fn the_inline_path_agrees_with_portable_atomic() {
            let features = features();
            assert_ne!(features & KNOWN, 0);
            let cell = AtomicU128::new((7u128 << 64) | 9);
            if features & VECTOR_LOADS != 0 {
                // SAFETY: a live, aligned, atomic-only location; the CPU has the feature.
                assert_eq!(unsafe { load(cell.as_ptr()) }, (7, 9));
                cell.store((1u128 << 64) | 2, Ordering::SeqCst);
                // SAFETY: as above.
                assert_eq!(unsafe { load(cell.as_ptr()) }, (1, 2));
            }
        }
    }
}

/// Under loom there is no 128-bit atomic. A pair is packed into **one loom `AtomicU64`**
/// (32 bits each), so loom sees every load and store with the ordering the ring passes
/// and checks those orderings, not just the interleavings. The loom models use small
/// limits and windows; the packing asserts that they fit. This never compiles into a
/// real build.
#[cfg(loom)]
mod pair {
    use loom::sync::atomic::{AtomicU64, Ordering};

    const LOW_MAX: u64 = u32::MAX as u64;

    fn pack((hi, lo): (u64, u64)) -> u64 {
        assert!(
            hi <= LOW_MAX && lo <= LOW_MAX,
            "loom pairs must stay small: {hi} {lo}"
        );
        (hi << 32) | lo
    }

    fn unpack(v: u64) -> (u64, u64) {
        (v >> 32, v & LOW_MAX)
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
    }
}
