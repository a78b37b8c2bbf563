//! The notification port: SNS in AWS (retried with backoff), an outbox directory locally.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::MessageAttributeValue;
use bytes::Bytes;
use tracing::warn;

use super::message::Message;
use crate::error::Retryable;
use crate::layout;
use crate::storage::{ObjectStore, Precondition, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("SNS publish to {topic} failed after {attempts} attempt(s): {message}")]
    Sns {
        topic: String,
        attempts: u32,
        message: String,
    },
    #[error(transparent)]
    Outbox(#[from] StorageError),
}

impl Retryable for NotifyError {
    /// SNS gave up after its own retries: an outage that a later attempt may outlast.
    fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Sns { .. } => true,
            NotifyError::Outbox(e) => e.is_retryable(),
        }
    }
}

#[async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    async fn publish(&self, message: &Message) -> Result<(), NotifyError>;
}

/// Publishes to an SNS topic (email subscription), with message attributes for filtering.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    attempts: u32,
    first_backoff: Duration,
}

impl SnsNotifier {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        SnsNotifier {
            client,
            topic_arn: topic_arn.into(),
            attempts: 5,
            first_backoff: Duration::from_millis(200),
        }
    }

    /// Attempts per message and the first pause between them (doubling after each failure).
    pub fn with_retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_backoff = first_backoff;
        self
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, m: &Message) -> Result<(), NotifyError> {
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let mut request = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .subject(&m.subject)
                .message(&m.body);
            for (name, value) in m.attributes() {
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .expect("data_type is set");
                request = request.message_attributes(name, value);
            }
            match request.send().await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    // Bad requests (a wrong topic, an invalid subject) do not get better by waiting.
                    let retryable = crate::aws::is_transient(&e);
                    last = DisplayErrorContext(&e).to_string();
                    warn!(attempt, retryable, error = %last, alert_type = m.alert_type.name(), "SNS publish failed");
                    if !retryable {
                        return Err(NotifyError::Sns {
                            topic: self.topic_arn.clone(),
                            attempts: attempt,
                            message: last,
                        });
                    }
                    if attempt < self.attempts {
                        tokio::time::sleep(self.first_backoff * 2u32.pow(attempt - 1)).await;
                    }
                }
            }
        }
        Err(NotifyError::Sns {
            topic: self.topic_arn.clone(),
            attempts: self.attempts,
            message: last,
        })
    }
}

/// Writes each message to `outbox/` in the lake (the local stand-in for email).
#[derive(Debug, Clone)]
pub struct OutboxNotifier {
    store: Arc<dyn ObjectStore>,
}

impl OutboxNotifier {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        OutboxNotifier { store }
    }

    /// The text of a message as it would arrive by email.
    pub fn render(m: &Message) -> String {
        let attributes: Vec<String> = m
            .attributes()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "Subject: {}\nAttributes: {}\n\n{}",
            m.subject,
            attributes.join(", "),
            m.body
        )
    }
}

#[async_trait]
impl Notifier for OutboxNotifier {
    /// Numbers the message after those in the outbox. Two publishers (the quality and alert
    /// stages of overlapping runs) can count the same outbox and pick the same number, so the
    /// message is only written where no message is yet (`put_if` absent) and otherwise takes
    /// the next number: an email is never written over another one.
    async fn publish(&self, m: &Message) -> Result<(), NotifyError> {
        let mut n = self
            .store
            .list(&format!("{}/", layout::OUTBOX))
            .await?
            .len();
        let body = Bytes::from(Self::render(m));
        loop {
            n += 1;
            let key = layout::outbox_key(n, m.alert_type.name(), &m.dataset);
            if self
                .store
                .put_if(&key, body.clone(), Precondition::Absent)
                .await?
            {
                return Ok(());
            }
        }
    }
}
