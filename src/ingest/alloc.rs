//! Keeps memory that the Parquet encoders free for the next partition instead of handing it back
//! to the kernel, while a bucket is written.
//!
//! glibc serves an allocation of more than its mmap threshold (128 KiB, raised to the largest
//! block freed so far) with a fresh mapping and unmaps it on free, and trims a free heap top
//! above twice that. A partition's frame and encoder buffers are a few MiB each, about the same
//! size for every partition, so each partition faulted its memory in afresh: at one day of
//! 1 M rows (five partitions of 200 k rows) half of ingest's 84 k page faults, and page faults
//! are most of its system time. With the thresholds raised only while a bucket is written, the
//! second partition reuses the first one's memory (43 k faults in that phase became 21 k, peak
//! RSS unchanged). They are put back afterwards: set for the whole ingest, the bucket's own
//! growing columns moved into the heap and were copied on every growth (more faults, 50 MiB
//! more RSS).

use std::sync::Mutex;

/// Writers at work; the thresholds are raised while there is one.
static WRITERS: Mutex<usize> = Mutex::new(0);

/// Raised thresholds: above any one buffer of a partition's frame or encoder at the budgets
/// ingest plans (glibc's own ceiling for its dynamic threshold).
const MMAP_THRESHOLD: i32 = 32 << 20;
const TRIM_THRESHOLD: i32 = 64 << 20;
/// glibc's defaults, restored when the last writer is done.
const DEFAULT_MMAP_THRESHOLD: i32 = 128 << 10;
const DEFAULT_TRIM_THRESHOLD: i32 = 128 << 10;

/// Held while a bucket's partitions are written.
pub struct ReuseFreedMemory(());

impl ReuseFreedMemory {
    pub fn new() -> Self {
        let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        if *writers == 0 {
            set_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD);
        }
        *writers += 1;
        ReuseFreedMemory(())
    }
}

impl Drop for ReuseFreedMemory {
    fn drop(&mut self) {
        let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        *writers -= 1;
        if *writers == 0 {
            set_thresholds(DEFAULT_MMAP_THRESHOLD, DEFAULT_TRIM_THRESHOLD);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds(mmap: i32, trim: i32) {
    // SAFETY: mallopt only changes parameters of glibc's allocator and takes its lock to do so.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
    }
}

/// Other allocators decide for themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds(_mmap: i32, _trim: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_writers_keep_the_thresholds_raised_until_the_last_is_done() {
        // Other tests may be writing at the same time: counts are lower bounds.
        let outer = ReuseFreedMemory::new();
        let inner = ReuseFreedMemory::new();
        assert!(*WRITERS.lock().unwrap() >= 2);
        drop(inner);
        assert!(*WRITERS.lock().unwrap() >= 1);
        // Memory allocated and freed in between is still ordinary memory.
        let v = vec![7u8; 40 << 20];
        assert_eq!(v[v.len() - 1], 7);
        drop(v);
        drop(outer);
    }
}
