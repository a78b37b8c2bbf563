//! How many files polars' multi-file scans read at once: settings only the environment gives.
//!
//! A night reads a set of days as one scan of their files ([`crate::silver::read::scan_dates`]):
//! a few hundred small files on the nights of a long history. polars reads as many files at a
//! time as it has pipelines (its threads: two on the aggregate Lambda, as here) and prepares a
//! few readers ahead, so much of each file's set-up waits for the one before. [`SCAN_ENV`] lets
//! it read 16 at a time with 32 prepared. Release builds, the same binary with and without them,
//! alternating runs, gold byte-identical:
//! - the H=365 night of `make bench-history`: 3.23 → 2.99 s (medians of 7 runs each), peak
//!   RSS 423 → 423 MiB;
//! - a night of 300 k orders a day after 31 days (`--scale 10`): 24.85 → 23.61 s (3 runs
//!   each), peak 741 → 727 MiB;
//! - a full recompute (`--full`) of the H=365 lake, which the same Lambda runs as a backfill:
//!   34.49 → 34.39 s (3 runs each), peak 718 → 781 MiB (731-748 against 721-833): no faster,
//!   and a little more memory in two runs of three. Kept for it too, as one Lambda runs both
//!   and the nightly run is the one that runs every night.
//!
//! Only the aggregate was measured, so only it has them: its Lambda in its template
//! environment, and `lake` for the commands that aggregate ([`set_scan_env`]). polars reads the
//! variables each time it plans a scan, and changing a process's environment while other
//! threads run is unsound, hence the environment and not a setting in code.

/// The variables and their values (an operator's own value, set before the process starts, is
/// kept).
pub const SCAN_ENV: [(&str, &str); 2] = [
    ("POLARS_MAX_CONCURRENT_SCANS", "16"),
    ("POLARS_NUM_READERS_PRE_INIT", "32"),
];

/// Sets each of [`SCAN_ENV`] that the environment does not set already.
///
/// # Safety
/// It changes the process's environment, so no other thread may read or write the environment
/// meanwhile: call it before the process starts any thread (a tokio runtime included).
pub unsafe fn set_scan_env() {
    for (name, value) in SCAN_ENV {
        if std::env::var_os(name).is_none() {
            // SAFETY: the caller's: no other thread touches the environment.
            unsafe { std::env::set_var(name, value) };
        }
    }
}
