//! Gold: business KPIs computed from silver.

pub mod kpis;

pub use kpis::{UNKNOWN_REGION, daily_kpis};
