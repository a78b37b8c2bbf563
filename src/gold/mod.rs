//! Gold: business KPIs computed from silver, written one object per month. The stage that
//! runs them is `stages::aggregate`.

pub mod kpis;
pub mod writer;

pub use kpis::{UNKNOWN_REGION, daily_kpis};
pub use writer::{GoldError, write_months};
