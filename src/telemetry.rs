//! Tracing set-up: JSON lines for Lambda (CloudWatch Logs Insights queries fields), readable
//! text on stderr for the CLI. Log events carry counts and ids, never row contents.

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
