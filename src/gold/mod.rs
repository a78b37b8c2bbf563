//! Gold: business KPIs computed from silver (`daily_kpis`, `payment_methods_daily`), written one
//! object per month per table. The stage that
//! runs them is `stages::aggregate`.

pub mod full;
pub mod incremental;
pub mod kpis;
pub mod methods;
mod probe;
pub mod scans;
pub mod writer;

pub use kpis::{KpiContracts, UNKNOWN_REGION, daily_kpis};
pub use methods::payment_methods_daily;
pub use writer::{GoldError, merge_days, read_months, write_months, write_table_months};
