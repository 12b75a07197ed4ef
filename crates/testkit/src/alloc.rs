//! A global allocator that counts the bytes live on the heap, for the tests and benches
//! that measure memory (bytes per key, a bounded table).
//!
//! A binary opts in by declaring it its global allocator:
//!
//! ```
//! use backstop_testkit::alloc::CountingAllocator;
//!
//! #[global_allocator]
//! static GLOBAL: CountingAllocator = CountingAllocator;
//!
//! # fn main() {
//! let before = CountingAllocator::live_bytes();
//! let held = vec![0u8; 4096];
//! assert!(CountingAllocator::live_bytes() - before >= 4096);
//! drop(held);
//! # }
//! ```
//!
//! The count is process-wide: a test binary that measures should hold that one test (or
//! run its tests on one thread), so that nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Bytes allocated and not yet freed, through [`CountingAllocator`]. Signed: memory
/// allocated before it became the global allocator is never counted in, but may be
/// counted out.
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting the bytes of every allocation and free.
#[derive(Debug)]
pub struct CountingAllocator;

impl CountingAllocator {
    /// Bytes live on the heap now, counted since the process started (meaningful only in a
    /// binary whose global allocator this is). Compare two readings on the thread that did
    /// the work in between.
    pub fn live_bytes() -> isize {
        // Relaxed: a statistic, read on the thread that did the work being measured.
        LIVE_BYTES.load(Ordering::Relaxed)
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Relaxed: a statistic, read on the thread that did the work.
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Relaxed: as above.
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}
