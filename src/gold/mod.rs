//! Gold: business KPIs computed from silver, written one object per month.

pub mod aggregate;
pub mod kpis;
pub mod writer;

pub use aggregate::{AggregateError, AggregateReport, AggregateRequest, Aggregator};
pub use kpis::{UNKNOWN_REGION, daily_kpis};
pub use writer::{DAILY_KPIS_PREFIX, GoldError, month_key, write_months};
