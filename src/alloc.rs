//! Keeps memory that polars frees for the next allocation instead of handing it back to the
//! kernel, while a phase that frees and reallocates the same sizes over and over runs.
//!
//! glibc serves an allocation of more than its mmap threshold (128 KiB, raised to the largest
//! block freed so far) with a fresh mapping and unmaps it on free, and trims a free heap top
//! above twice that, so the next allocation faults its pages in afresh; page faults are most
//! of a stage's system time here. Two phases measured it:
//! - ingest writing a bucket's partitions ([`Keep::PARTITION_WRITES`]): a partition's frame
//!   and encoder buffers are a few MiB each, about the same for every partition; at one day of
//!   1 M rows (five partitions of 200 k rows) half of ingest's 84 k page faults were those
//!   buffers, and with the thresholds raised while a bucket is written the second partition
//!   reuses the first one's memory (43 k faults in that phase became 21 k, peak RSS unchanged).
//!   Raised for the whole ingest instead, the bucket's own growing columns moved into the heap
//!   and were copied on every growth (more faults, 50 MiB more RSS);
//! - the nightly KPI run ([`Keep::NIGHTLY_KPIS`]): it reads a few hundred small files over
//!   and over (each file's columns, a group's joins and sorts), and on the H=365 night of
//!   `make bench-history` took 285-300 k page faults and 1.1-1.3 s of system time of 3.5-4 s
//!   of CPU. With no heap trimmed while it runs and only blocks over 32 MiB mapped apart:
//!   about 150 k faults, system time 0.75-0.9 s, wall 2.22 → 2.06 s (medians of 6 alternating
//!   runs; 2.89 → 2.49 s in 5 on a slower hour, with a 1 GiB mmap threshold), peak RSS
//!   +35-75 MiB.
//!
//! The thresholds are process-wide: the first guard's apply until the last guard is dropped,
//! and then glibc's default values are put back (its dynamic mmap threshold stays off, as after
//! any `mallopt`); what was kept goes back to the kernel as later frees trim the heap.

use std::sync::Mutex;

/// Caps glibc's allocator arenas at the cores this process may use. Every binary calls it as it
/// starts, once logging is set up (so a refusal is logged): arenas the runtime's threads already
/// took stay, and threads started later share them.
///
/// glibc gives threads that allocate at the same time arenas of their own, up to eight per core,
/// and an arena's freed memory serves only the threads that use that arena. Polars' pools, the
/// tokio runtime and the threads each stage starts for a query or an encoder each drew on one,
/// so a process held the high-water mark of several arenas, and every page of each was faulted
/// in (page faults are most of the stages' system time here). Release builds with and without
/// this call, alternating runs on this 2-core machine:
/// - the nightly aggregate on the H=365 night of `make bench-history`: peak 534-551 ->
///   425-448 MiB, wall median 2.01 -> 1.79 s; on a night of 300 k orders a day (`--scale 10`,
///   H=8): 1.10-1.12 GiB -> 818-877 MiB, sys 0.85-0.90 -> 0.57-0.82 s; gold byte-identical;
/// - ingest of 10 M rows: sys 1.50 -> 1.10 s (page faults 156 k -> 152 k); of the one-day 1 M
///   rows 37.4 k -> 35.1 k faults; wall unchanged.
///
/// Set before any thread starts (`MALLOC_ARENA_MAX=2`), one run of the aggregate peaked at 419
/// MiB. Building the tokio runtime after the cap instead of under `#[tokio::main]` made no
/// difference: the same three arena heaps mid-run, 421-444 against 424-468 MiB in 4 alternating
/// runs. The runtime's threads take no arena before `main` does this. One arena measured about
/// the same memory but would leave every core contending for one lock.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_arenas() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let arenas = i32::try_from(cores).unwrap_or(i32::MAX);
    // SAFETY: mallopt only changes parameters of glibc's allocator and takes its lock to do so.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) } != 1 {
        tracing::warn!(
            arenas,
            "glibc refused the arena limit: threads keep arenas of their own"
        );
    }
}

/// Other allocators decide for themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}

/// Guards held, and the settings in force while there is one.
static HELD: Mutex<usize> = Mutex::new(0);

/// What glibc keeps while a [`ReuseFreedMemory`] is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// Allocations above this many bytes get a mapping of their own, unmapped on free.
    mmap_threshold: i32,
    /// A free heap top above this many bytes is given back to the kernel.
    trim_threshold: i32,
    /// Bytes added to every extension of the heap.
    top_pad: i32,
}

impl Keep {
    /// A bucket's partitions written by ingest: above any one buffer of a partition's frame or
    /// encoder at the budgets ingest plans (glibc's own ceiling for its dynamic threshold).
    pub const PARTITION_WRITES: Keep = Keep {
        mmap_threshold: 32 << 20,
        trim_threshold: 64 << 20,
        top_pad: DEFAULT.top_pad,
    };
    /// The nightly KPI run: nothing trimmed, the heap grown 64 MiB at a time, and only blocks
    /// over 32 MiB mapped apart: the highest threshold every glibc takes (2.34, Amazon Linux
    /// 2023's and so the Lambda runtime's, refuses more; 1 GiB on this machine's 2.36 measured
    /// the same). Its memory is bounded by its day groups, not by what glibc gives back.
    pub const NIGHTLY_KPIS: Keep = Keep {
        mmap_threshold: 32 << 20,
        trim_threshold: 1 << 30,
        top_pad: 64 << 20,
    };
}

/// glibc's defaults (`man mallopt`), put back when the last guard is dropped.
const DEFAULT: Keep = Keep {
    mmap_threshold: 128 << 10,
    trim_threshold: 128 << 10,
    top_pad: 128 << 10,
};

/// Held while a phase runs that should reuse freed memory.
pub struct ReuseFreedMemory(());

impl ReuseFreedMemory {
    pub fn new(keep: Keep) -> Self {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if *held == 0 && !apply(keep) {
            tracing::warn!(
                ?keep,
                "glibc refused the allocator settings: freed memory goes back to the kernel as before"
            );
        }
        *held += 1;
        ReuseFreedMemory(())
    }
}

impl Drop for ReuseFreedMemory {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        *held -= 1;
        if *held == 0 {
            apply(DEFAULT);
        }
    }
}

/// Hands the free memory glibc keeps back to the kernel, whatever the thresholds: for the end
/// of a phase that freed far more than what comes next allocates. While a guard keeps memory,
/// the heap is never trimmed, and freed small blocks in the middle of a heap never are: on the
/// 1 M orders a day night, what the first pass had freed (31 groups' frames, the smaller tables
/// its map outgrew) stayed resident through the rest of the night, and the measures grew the
/// heap on top of it; released after the pass, the process went from 2.0 to 0.7 GiB resident.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_freed() {
    // SAFETY: malloc_trim takes each arena's lock and only returns whole free pages.
    unsafe { libc::malloc_trim(0) };
}

/// Other allocators decide for themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() {}

/// Sets `keep`'s values; false when glibc refused them. The mmap threshold goes first and must
/// be taken: a trim threshold set alone would freeze the mmap threshold wherever glibc's
/// dynamic one stands (at its 128 KiB start, every larger block is mapped and unmapped on its
/// own: the H=365 night took 3.6 s instead of 2.7 that way).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply(keep: Keep) -> bool {
    // SAFETY: mallopt only changes parameters of glibc's allocator and takes its lock to do so.
    let set = |param, value| unsafe { libc::mallopt(param, value) } == 1;
    set(libc::M_MMAP_THRESHOLD, keep.mmap_threshold)
        && set(libc::M_TRIM_THRESHOLD, keep.trim_threshold)
        && set(libc::M_TOP_PAD, keep.top_pad)
}

/// Other allocators decide for themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply(_keep: Keep) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_every_setting() {
        // Under the lock, so no guard of another test applies settings in between.
        let held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        for keep in [Keep::PARTITION_WRITES, Keep::NIGHTLY_KPIS, DEFAULT] {
            assert!(apply(keep), "{keep:?}");
        }
        // A guard another test holds runs on with the settings applied last here: only its
        // speed can differ.
        if *held == 0 {
            apply(DEFAULT);
        }
    }

    #[test]
    fn nested_guards_keep_the_thresholds_raised_until_the_last_is_done() {
        // Other tests may hold one at the same time: counts are lower bounds.
        let outer = ReuseFreedMemory::new(Keep::PARTITION_WRITES);
        let inner = ReuseFreedMemory::new(Keep::NIGHTLY_KPIS);
        assert!(*HELD.lock().unwrap() >= 2);
        drop(inner);
        assert!(*HELD.lock().unwrap() >= 1);
        // Memory allocated and freed in between is still ordinary memory.
        let v = vec![7u8; 40 << 20];
        assert_eq!(v[v.len() - 1], 7);
        drop(v);
        drop(outer);
    }
}
