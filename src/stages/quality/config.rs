//! The quality function's environment: nothing beyond the standard AWS variables (the bucket
//! comes with each event). Kept so every stage has the same shape.

use crate::config::ConfigError;

#[derive(Debug, Clone, Default)]
pub struct QualityConfig {}

impl QualityConfig {
    pub fn from_env(_var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(QualityConfig {})
    }
}
