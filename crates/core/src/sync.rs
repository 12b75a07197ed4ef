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

        #[inline(always)]
        pub(crate) fn compare_exchange(
            &self,
            current: (u64, u64),
            new: (u64, u64),
            success: Ordering,
            failure: Ordering,
        ) -> Result<(u64, u64), (u64, u64)> {
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            if super::x86::features() & super::x86::CMPXCHG16B != 0 {
                // A locked instruction is SeqCst, at least any ordering asked for.
                let dst = self.0.as_ptr();
                let (previous, swapped) = {
                    // SAFETY: `dst` is valid and 16-byte aligned while `self` lives,
                    // every access to it is atomic, and `features` saw CMPXCHG16B.
                    unsafe { super::x86::compare_exchange(dst, current, new) }
                };
                return if swapped { Ok(previous) } else { Err(previous) };
            }
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

/// The ring's 128-bit load and CAS inlined on x86_64. `portable-atomic` picks
/// CMPXCHG16B and vector loads at run time too, but calls them through a function
/// pointer on every operation (an admission makes four loads and a CAS: about 1.5 ns of
/// calls on the benchmark machine). Here the CPU is asked once and the instructions sit
/// inline behind one predictable branch; without them, `portable-atomic` does the work.
#[cfg(all(not(loom), target_arch = "x86_64", not(miri)))]
mod x86 {
    use std::arch::asm;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// Asked the CPU already.
    const KNOWN: u8 = 1;
    /// CMPXCHG16B is there.
    pub(super) const CMPXCHG16B: u8 = 2;
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

    /// Swaps the 128 bits at `dst` from `current` to `new` (each `(high, low)`) if they
    /// equal `current`, atomically; returns what was there and whether it swapped.
    ///
    /// # Safety
    ///
    /// `dst` is valid for writes, 16-byte aligned, only ever accessed atomically, and
    /// the CPU has [`CMPXCHG16B`].
    #[inline(always)]
    pub(super) unsafe fn compare_exchange(
        dst: *mut u128,
        current: (u64, u64),
        new: (u64, u64),
    ) -> ((u64, u64), bool) {
        let (previous_high, previous_low): (u64, u64);
        let flag: u64;
        // LOCK CMPXCHG16B compares RDX:RAX, stores RCX:RBX on a match, else loads into
        // RDX:RAX. RBX may hold the base pointer, so the new low half goes through
        // another register, swapped in and back out around the instruction. Every other
        // operand is pinned: a register the allocator picks could be RBX itself (it may,
        // when RBX is not the base pointer), and would hold the new low half instead of
        // the address once swapped: the fuzzers' ASan build did exactly that.
        // SAFETY: the caller's contract: an aligned, valid, atomic-only 16-byte location.
        unsafe {
            asm!(
                "xchg {new_low}, rbx",
                "lock cmpxchg16b xmmword ptr [rdi]",
                "sete cl",
                "mov rbx, {new_low}",
                in("rdi") dst,
                new_low = inout(reg) new.1 => _,
                inout("rcx") new.0 => flag,
                inout("rax") current.1 => previous_low,
                inout("rdx") current.0 => previous_high,
                options(nostack),
            );
        }
        // SETE wrote only CL.
        let swapped = flag as u8 != 0;
        ((previous_high, previous_low), swapped)
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
            }
            if features & CMPXCHG16B != 0 {
                // SAFETY: as above.
                let failed = unsafe { compare_exchange(cell.as_ptr(), (7, 8), (1, 2)) };
                assert_eq!(failed, ((7, 9), false));
                assert_eq!(cell.load(Ordering::SeqCst), (7u128 << 64) | 9);
                // SAFETY: as above.
                let swapped = unsafe { compare_exchange(cell.as_ptr(), (7, 9), (1, 2)) };
                assert_eq!(swapped, ((7, 9), true));
                assert_eq!(cell.load(Ordering::SeqCst), (1u128 << 64) | 2);
                // SAFETY: as above; the high half differs, so it must not swap.
                let failed = unsafe { compare_exchange(cell.as_ptr(), (2, 2), (3, 3)) };
                assert_eq!(failed, ((1, 2), false));
            }
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
