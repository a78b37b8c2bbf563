//! Tracing set-up: JSON lines for Lambda (CloudWatch Logs Insights queries fields), readable
//! text on stderr for the CLI. Log events carry counts and ids, never row contents. Also the
//! process figures the debug logs of long phases carry (page faults, peak RSS).

use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// JSON logs to stdout, as Lambda expects; `RUST_LOG` overrides the level. Also turns on the
/// EMF metric lines ([`crate::metrics`]).
pub fn init_lambda() {
    crate::metrics::enable();
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // CloudWatch stamps every line
        .try_init();
}

/// Human-readable logs to stderr (stdout is for results); quiet unless `RUST_LOG` says otherwise.
pub fn init_cli() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The process's minor page faults so far (0 where `/proc` does not say). Ingest's system time
/// is mostly first touches of fresh memory, so the debug log counts them per phase.
pub fn minor_faults() -> u64 {
    // Field 10 of /proc/self/stat; the command name (field 2) may hold spaces, so count after it.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let after_name = &stat[stat.rfind(')')? + 1..];
            after_name.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

/// The process's resident memory now in MiB (0 where `/proc` does not say): beside the peak,
/// it tells a phase that holds memory from one that only passed through it.
pub fn rss_mib() -> u64 {
    status_mib("VmRSS:")
}

/// The process's peak resident memory so far in MiB (0 where `/proc` does not say).
pub fn peak_rss_mib() -> u64 {
    status_mib("VmHWM:")
}

/// CPU time the process has used so far (user and system, every thread) in milliseconds (0
/// where the platform does not say).
pub fn cpu_ms() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given and reads nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: it succeeded, so it filled the struct (and zeroed is a valid rusage anyway).
    let usage = unsafe { usage.assume_init() };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// A kB `field` of `/proc/self/status` in MiB (0 where it does not say).
fn status_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib >> 10)
}
