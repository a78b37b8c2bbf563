//! The quality gate: checks each ingested batch against its contract's rules and writes a
//! report (`quality/<dataset>/<batch_id>.json`) whose verdict decides whether it may be loaded.

pub mod checks;
mod gate;
pub mod key_index;
pub mod report;

pub use gate::{QualityError, QualityGate};
pub use report::{CheckResult, CheckStatus, Override, QualityReport, Tally, Verdict};
