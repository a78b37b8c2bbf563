//! The words of every page (quality verdicts, function failures, SLA breaches) and the notifier
//! port that sends them (SNS, or the lake's outbox). What is worth sending, and when, is the
//! alert stage's business (`stages::alert`).

pub mod message;
pub mod notifier;

pub use message::{AlertType, Message};
pub use notifier::{Notifier, NotifyError, OutboxNotifier, SnsNotifier};
