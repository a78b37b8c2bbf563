//! Decides what to send: the same alert (type, dataset, date) goes out once per deduplication
//! window, and when alerts arrive in a burst the extra ones are held and sent as one digest.
//! State lives next to the data (`alerts/` in the bucket), so the Lambda stays stateless.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::arrivals::{self, ArrivalRecord, Finding};
use super::request::AlertRequest;
use super::sla;
use crate::alert::message::{self, AlertType, Message};
use crate::alert::notifier::{Notifier, NotifyError};
use crate::contract::Registry;
use crate::layout;
use crate::state::{LakeState, StateError};
use crate::storage::{ObjectStore, StorageError};

/// How long a claim on the alert state lasts: longer than the alert function may run (60 s in
/// the template), short enough that a crashed one holds up pages for two minutes at most.
const STATE_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(2 * 60);

#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// The same alert for the same dataset and date is sent once per this window.
    pub dedup_window: Duration,
    /// Alerts within this window count towards a burst...
    pub digest_window: Duration,
    /// ...and once this many were sent in it, further ones wait for a digest.
    pub digest_threshold: usize,
    /// Hour (UTC) by which a day's load must have succeeded.
    pub sla_hour: u32,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            dedup_window: Duration::hours(6),
            digest_window: Duration::minutes(5),
            digest_threshold: 3,
            sla_hour: 4,
        }
    }
}

/// What happened to one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AlertOutcome {
    Sent {
        alert_type: String,
        subject: String,
    },
    /// Sent recently already.
    Suppressed {
        alert_type: String,
        dedup_key: String,
    },
    /// Held back for a digest (a burst is under way).
    Queued {
        alert_type: String,
        subject: String,
    },
    DigestSent {
        alerts: usize,
        subject: String,
    },
    /// Nothing to say (a passing batch, an SLA that holds).
    NothingToSend {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    State(#[from] StateError),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SentRecord {
    sent_at: DateTime<Utc>,
    suppressed: u64,
}

/// That a batch's verdict went through the alert service, and what came of it.
#[derive(Debug, Serialize, Deserialize)]
struct HandledVerdict {
    handled_at: DateTime<Utc>,
    outcomes: Vec<AlertOutcome>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Recent {
    sent: Vec<DateTime<Utc>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Digest {
    queued: Vec<(DateTime<Utc>, Message)>,
}

/// What one invocation did with each alert it was given.
#[derive(Debug, Clone, Serialize)]
pub struct AlertResponse {
    pub outcomes: Vec<AlertOutcome>,
}

#[derive(Debug, Clone)]
pub struct AlertService {
    state: Arc<dyn ObjectStore>,
    records: LakeState,
    notifier: Arc<dyn Notifier>,
    settings: AlertSettings,
    /// Whose exports the arrival check expects (`[arrival]` in a contract).
    registry: Arc<Registry>,
}

impl AlertService {
    /// `state` holds the deduplication ledger and reads SLA run records.
    pub fn new(
        state: Arc<dyn ObjectStore>,
        notifier: Arc<dyn Notifier>,
        settings: AlertSettings,
    ) -> Self {
        AlertService {
            records: LakeState::new(state.clone()),
            state,
            notifier,
            settings,
            registry: Arc::new(Registry::builtin()),
        }
    }

    /// Expects exports as these contracts declare (default: the built-in ones).
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = registry;
        self
    }

    async fn load<T: Default + for<'de> Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<T, AlertError> {
        Ok(self.records.get_json_or_default(key).await?)
    }

    async fn save(&self, key: &str, value: &impl Serialize) -> Result<(), AlertError> {
        Ok(self.records.put_json(key, value).await?)
    }

    /// Handles every request of one invocation in turn.
    pub async fn handle_all(
        &self,
        requests: Vec<AlertRequest>,
        now: DateTime<Utc>,
    ) -> Result<AlertResponse, AlertError> {
        let mut outcomes = Vec::new();
        for request in requests {
            outcomes.extend(self.handle(request, now).await?);
        }
        Ok(AlertResponse { outcomes })
    }

    /// Handles one request. The deduplication ledger, the burst window and the digest are
    /// read, changed and written back, so one alert invocation at a time holds them.
    pub async fn handle(
        &self,
        request: AlertRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlertOutcome>, AlertError> {
        self.records
            .with_claim(
                &layout::stage_claim_key("alerts"),
                STATE_CLAIM_TTL,
                STATE_CLAIM_TTL,
                async || self.handle_claimed(request, now).await,
            )
            .await
    }

    async fn handle_claimed(
        &self,
        request: AlertRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlertOutcome>, AlertError> {
        let mut outcomes = Vec::new();
        // Which batch's verdict this handles: recorded once the alert is offered, so a run
        // killed in between sends it again (and deduplication keeps it to one email).
        let verdict_of = match &request {
            AlertRequest::Quality(r) => Some((r.dataset.clone(), r.batch_id.clone())),
            _ => None,
        };
        let message = match request {
            AlertRequest::Quality(report) => match message::quality_alert(&report) {
                Some(m) => Some(m),
                None => {
                    outcomes.push(AlertOutcome::NothingToSend {
                        reason: format!("{} {} passed", report.dataset, report.batch_id),
                    });
                    None
                }
            },
            AlertRequest::Failure(f) => Some(message::failure_alert(&f)),
            AlertRequest::LoadFailure(f) => Some(message::load_failure_alert(&f)),
            AlertRequest::SlaCheck { date } => {
                self.sla(date.unwrap_or(now.date_naive()), now, &mut outcomes)
                    .await?
            }
            AlertRequest::FlushDigest => None,
            AlertRequest::ArrivalCheck { date } => {
                // By default today, and yesterday for late arrivals only: an export that lands
                // late just before midnight is still reported on the first check of the next
                // day, while a first deployment does not page about the day before it.
                let today = now.date_naive();
                let days = match date {
                    Some(day) => vec![(day, true)],
                    None => today
                        .pred_opt()
                        .map(|d| (d, false))
                        .into_iter()
                        .chain([(today, true)])
                        .collect(),
                };
                for (day, missing_too) in days {
                    self.check_arrivals(day, missing_too, now, &mut outcomes)
                        .await?;
                }
                None
            }
        };
        if let Some(m) = message {
            outcomes.push(self.offer(m, now).await?);
        }
        if let Some((dataset, batch_id)) = verdict_of {
            let handled = HandledVerdict {
                handled_at: now,
                outcomes: outcomes.clone(),
            };
            self.save(&layout::verdict_alerted_key(&dataset, &batch_id), &handled)
                .await?;
        }
        if let Some(digest) = self.flush_due(now).await? {
            outcomes.push(digest);
        }
        Ok(outcomes)
    }

    /// Whether every dataset that declares `[arrival]` had an export on `day` by its deadline;
    /// each finding is offered like any alert and remembered, so it is said once.
    async fn check_arrivals(
        &self,
        day: NaiveDate,
        missing_too: bool,
        now: DateTime<Utc>,
        outcomes: &mut Vec<AlertOutcome>,
    ) -> Result<(), AlertError> {
        let day_text = day.format("%Y-%m-%d").to_string();
        for contract in self.registry.iter().filter(|c| c.arrival.is_some()) {
            let record_key = layout::arrival_record_key(&contract.name, &day_text);
            let said: ArrivalRecord = self.load(&record_key).await?;
            let arrived = arrivals::arrivals(self.state.as_ref(), &contract.name, day).await?;
            match arrivals::judge(contract, day, now, &arrived, &said, self.state.as_ref()) {
                Finding::Quiet(reason) => outcomes.push(AlertOutcome::NothingToSend { reason }),
                Finding::Say(m, _) if !missing_too && m.alert_type == AlertType::ExportMissing => {
                    outcomes.push(AlertOutcome::NothingToSend {
                        reason: format!(
                            "{} of {day_text}: a past day is checked for late arrivals only",
                            contract.name
                        ),
                    })
                }
                Finding::Say(m, record) => {
                    // Offered first: a run killed in between says it again (deduplicated).
                    outcomes.push(self.offer(*m, now).await?);
                    self.save(&record_key, &record).await?;
                }
            }
        }
        Ok(())
    }

    async fn sla(
        &self,
        date: NaiveDate,
        now: DateTime<Utc>,
        outcomes: &mut Vec<AlertOutcome>,
    ) -> Result<Option<Message>, AlertError> {
        let deadline = date
            .and_hms_opt(self.settings.sla_hour, 0, 0)
            .expect("valid hour")
            .and_utc();
        let day = date.format("%Y-%m-%d").to_string();
        if now < deadline {
            outcomes.push(AlertOutcome::NothingToSend {
                reason: format!("the SLA for {day} runs until {deadline}"),
            });
            return Ok(None);
        }
        let ran = self
            .state
            .head(&layout::load_run_key(&day))
            .await?
            .is_some();
        let status = sla::day_status(&self.records, &self.registry, date, deadline).await?;
        if ran && status.missing.is_empty() {
            outcomes.push(AlertOutcome::NothingToSend {
                reason: format!(
                    "{day} was loaded: {} of {} batch(es) in the warehouse, {} held back with their own alerts",
                    status.loaded,
                    status.batches,
                    status.held.len()
                ),
            });
            return Ok(None);
        }
        let deadline_text = format!("{:02}:00 UTC", self.settings.sla_hour);
        Ok(Some(message::sla_alert(
            &day,
            &deadline_text,
            ran,
            &status,
            &self.state.uri(layout::LOAD_RUNS_PREFIX),
        )))
    }

    /// Sends, suppresses as a repeat, or queues for a digest.
    async fn offer(&self, m: Message, now: DateTime<Utc>) -> Result<AlertOutcome, AlertError> {
        let sent_key = layout::alert_sent_key(&m.dedup_key());
        let mut record: SentRecord = self.load(&sent_key).await?;
        // A missing record reads as sent at the epoch: never a repeat.
        if now - record.sent_at < self.settings.dedup_window {
            record.suppressed += 1;
            self.save(&sent_key, &record).await?;
            info!(dedup_key = %m.dedup_key(), "repeat alert suppressed");
            return Ok(AlertOutcome::Suppressed {
                alert_type: m.alert_type.name().into(),
                dedup_key: m.dedup_key(),
            });
        }
        let mut recent: Recent = self.load(layout::ALERT_RECENT_KEY).await?;
        recent
            .sent
            .retain(|t| now - *t < self.settings.digest_window);
        let sent = SentRecord {
            sent_at: now,
            suppressed: 0,
        };
        // Each step is recorded before the next, so a crash anywhere sends the alert again on
        // the retry rather than never: at worst twice (the publish done, its record not).
        // Only warnings wait for a digest: a failure, missing data or a breached SLA is sent
        // at once however many alerts went before it (and still counts towards the burst).
        if !m.is_urgent() && recent.sent.len() >= self.settings.digest_threshold {
            let mut digest: Digest = self.load(layout::ALERT_DIGEST_KEY).await?;
            let subject = m.subject.clone();
            let alert_type = m.alert_type.name().to_owned();
            // A retry of a run that queued it already does not queue it twice.
            if !digest
                .queued
                .iter()
                .any(|(_, q)| q.dedup_key() == m.dedup_key())
            {
                digest.queued.push((now, m));
                self.save(layout::ALERT_DIGEST_KEY, &digest).await?;
            }
            self.save(&sent_key, &sent).await?;
            info!(queued = digest.queued.len(), "alert held for a digest");
            Ok(AlertOutcome::Queued {
                alert_type,
                subject,
            })
        } else {
            // Publish first: if it fails nothing is recorded and a retry sends it.
            self.notifier.publish(&m).await?;
            self.save(&sent_key, &sent).await?;
            recent.sent.push(now);
            self.save(layout::ALERT_RECENT_KEY, &recent).await?;
            info!(alert_type = m.alert_type.name(), dataset = %m.dataset, "alert sent");
            Ok(AlertOutcome::Sent {
                alert_type: m.alert_type.name().into(),
                subject: m.subject.clone(),
            })
        }
    }

    /// Sends the held alerts as one digest once the oldest has waited a whole window.
    async fn flush_due(&self, now: DateTime<Utc>) -> Result<Option<AlertOutcome>, AlertError> {
        let digest: Digest = self.load(layout::ALERT_DIGEST_KEY).await?;
        let Some((oldest, _)) = digest.queued.first() else {
            return Ok(None);
        };
        if now - *oldest < self.settings.digest_window {
            return Ok(None);
        }
        let messages: Vec<Message> = digest.queued.into_iter().map(|(_, m)| m).collect();
        let d = message::digest(&messages);
        self.notifier.publish(&d).await?;
        self.state.delete(layout::ALERT_DIGEST_KEY).await?;
        info!(alerts = messages.len(), "digest sent");
        Ok(Some(AlertOutcome::DigestSent {
            alerts: messages.len(),
            subject: d.subject,
        }))
    }
}
