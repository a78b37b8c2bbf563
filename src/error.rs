//! What every error of the pipeline tells its caller besides its message: whether another
//! attempt can succeed. The Lambda entry points turn it into the reported `error_type`, so
//! throttles are retried and bad input goes straight to the failure destination.

/// Whether another attempt can succeed (transient infrastructure trouble), as opposed to a
/// problem with the input or the configuration that a retry would only repeat.
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}
