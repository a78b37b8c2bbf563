//! The arrival check: for each dataset whose contract declares `[arrival]`, whether an export
//! arrived on a day by its deadline. `export_missing` once the deadline passed with nothing,
//! `export_late` once something arrived after it; each at most once per dataset and day.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::message::{self, Due, Message};
use crate::contract::Contract;
use crate::layout;
use crate::storage::{ObjectStore, StorageError};

/// What the check has said about one dataset's export of one day (`alerts/arrivals/…`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrivalRecord {
    pub missing_sent_at: Option<DateTime<Utc>>,
    pub late_sent_at: Option<DateTime<Utc>>,
}

/// What to say about a dataset's export of a day, and the record to keep once it is said.
#[derive(Debug)]
pub enum Finding {
    /// Not due yet, on time, or already said.
    Quiet(String),
    Say(Box<Message>, ArrivalRecord),
}

/// When the batches of `dataset` whose source arrived on `day` arrived, oldest first. The batch
/// id starts with the source object's arrival time, so one listing of that day's prefix answers.
pub async fn arrivals(
    store: &dyn ObjectStore,
    dataset: &str,
    day: NaiveDate,
) -> Result<Vec<DateTime<Utc>>, StorageError> {
    let day_text = day.format("%Y-%m-%d").to_string();
    let listed = store
        .list(&layout::manifests_arrived_prefix(dataset, &day_text))
        .await?;
    let mut times: Vec<DateTime<Utc>> = listed
        .iter()
        .filter_map(|m| layout::parse_manifest_key(&m.key))
        .filter_map(|(_, batch_id)| {
            let stamp = batch_id.get(..16)?;
            NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
                .ok()
                .map(|t| t.and_utc())
        })
        .collect();
    times.sort();
    Ok(times)
}

/// Decides what the check says about `contract`'s export of `day` at `now`.
pub fn judge(
    contract: &Contract,
    day: NaiveDate,
    now: DateTime<Utc>,
    arrived: &[DateTime<Utc>],
    said: &ArrivalRecord,
    store: &dyn ObjectStore,
) -> Finding {
    let Some(arrival) = contract.arrival else {
        return Finding::Quiet(format!("{} declares no arrival", contract.name));
    };
    let day_text = day.format("%Y-%m-%d").to_string();
    let deadline = arrival.deadline(day);
    let on_time = arrived.iter().any(|t| *t <= deadline);
    let due = Due {
        day: day_text.clone(),
        deadline: deadline.format("%H:%M UTC").to_string(),
        declared: arrival.describe(),
    };
    if now < deadline || on_time {
        let why = if on_time {
            "arrived on time"
        } else {
            "is not due yet"
        };
        return Finding::Quiet(format!("{} of {day_text} {why}", contract.name));
    }
    let mut record = said.clone();
    if arrived.is_empty() {
        if said.missing_sent_at.is_some() {
            return Finding::Quiet(format!("{} of {day_text}: missing, said", contract.name));
        }
        record.missing_sent_at = Some(now);
        let raw = store.uri(&format!("{}/{}/", layout::RAW, contract.name));
        let m = message::export_missing(&contract.name, &due, &raw);
        return Finding::Say(Box::new(m), record);
    }
    if said.late_sent_at.is_some() {
        return Finding::Quiet(format!("{} of {day_text}: late, said", contract.name));
    }
    record.late_sent_at = Some(now);
    let times: Vec<String> = arrived
        .iter()
        .map(|t| t.format("%H:%M UTC").to_string())
        .collect();
    let manifests = store.uri(&layout::manifests_arrived_prefix(&contract.name, &day_text));
    let m = message::export_late(&contract.name, &due, &times, &manifests);
    Finding::Say(Box::new(m), record)
}
