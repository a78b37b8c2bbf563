//! Alerting: one place owns the words of every page (quality verdicts, function failures, SLA
//! breaches), decides what is worth sending, and sends it through a [`Notifier`].

pub mod input;
pub mod message;
pub mod notifier;
mod service;

pub use input::{AlertRequest, parse};
pub use message::{AlertType, Message};
pub use notifier::{Notifier, NotifyError, OutboxNotifier, SnsNotifier};
pub use service::{AlertError, AlertOutcome, AlertService, AlertSettings};
