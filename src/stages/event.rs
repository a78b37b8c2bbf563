//! S3 event notifications: which objects were created, with keys decoded. The ingest and
//! quality stages read their requests with this.

use aws_lambda_events::s3::S3Event;

use super::RequestError;

/// An object named by an event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl ObjectRef {
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// The created objects of an S3 event notification (see [`created_objects`]).
pub fn s3_records(
    event: serde_json::Value,
) -> Result<Vec<Result<ObjectRef, EventError>>, RequestError> {
    let event: S3Event = serde_json::from_value(event)
        .map_err(|e| RequestError(format!("not an S3 event notification: {e}")))?;
    Ok(created_objects(&event))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event record {index} has no bucket name or object key")]
    Incomplete { index: usize },
    #[error("event record {index}: object key {raw:?} is not valid URL encoding of UTF-8")]
    BadKey { index: usize, raw: String },
}

/// Decodes an S3 event key: `+` is a space and `%XX` a byte (keys arrive form-encoded).
pub fn decode_key(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Objects created according to the event, in record order. Records of other event types
/// (a removal, the `s3:TestEvent` sent when notifications are configured) and folder markers
/// are skipped.
pub fn created_objects(event: &S3Event) -> Vec<Result<ObjectRef, EventError>> {
    event
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.event_name
                .as_deref()
                .is_none_or(|n| n.starts_with("ObjectCreated:"))
        })
        // Folder markers ("Create folder" in the console) are zero-byte keys ending in '/'.
        .filter(|(_, r)| !r.s3.object.key.as_deref().is_some_and(|k| k.ends_with('/')))
        .map(|(index, r)| {
            let (Some(bucket), Some(raw)) =
                (r.s3.bucket.name.as_deref(), r.s3.object.key.as_deref())
            else {
                return Err(EventError::Incomplete { index });
            };
            let key = decode_key(raw).ok_or_else(|| EventError::BadKey {
                index,
                raw: raw.to_owned(),
            })?;
            Ok(ObjectRef {
                bucket: bucket.to_owned(),
                key,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_form_decoded() {
        let cases = [
            ("raw/orders/plain.csv", Some("raw/orders/plain.csv")),
            (
                "raw/orders/Happy+Face.csv",
                Some("raw/orders/Happy Face.csv"),
            ),
            (
                "raw/orders/Happy%20Face.csv",
                Some("raw/orders/Happy Face.csv"),
            ),
            ("raw/orders/a%2Bb.csv", Some("raw/orders/a+b.csv")),
            (
                "raw/orders/caf%C3%A9+%E6%97%A5%E6%9C%AC.csv",
                Some("raw/orders/café 日本.csv"),
            ),
            ("raw/orders/100%25.csv", Some("raw/orders/100%.csv")),
            ("raw/orders/bad%2.csv", None),
            ("raw/orders/bad%zz.csv", None),
            ("raw/orders/trailing%", None),
            ("raw/orders/%FF.csv", None),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_key(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn created_objects_skip_other_events_and_flag_broken_records() {
        let event: S3Event = serde_json::from_value(serde_json::json!({
            "Records": [
                {"eventName": "ObjectCreated:Put", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {},
                 "s3": {"bucket": {"name": "lake"}, "object": {"key": "raw/orders/a+b.csv"}}},
                {"eventName": "ObjectRemoved:Delete", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {},
                 "s3": {"bucket": {"name": "lake"}, "object": {"key": "raw/orders/gone.csv"}}},
                {"eventName": "ObjectCreated:CompleteMultipartUpload", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {},
                 "s3": {"bucket": {"name": "lake"}, "object": {"key": "raw/orders/%E2"}}},
                {"eventName": "ObjectCreated:Put", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {},
                 "s3": {"bucket": {"name": "lake"}, "object": {"key": "raw/orders/"}}},
                {"eventName": "ObjectCreated:Copy", "eventTime": "2026-11-21T02:00:00.000Z", "userIdentity": {}, "requestParameters": {},
                 "s3": {"bucket": {}, "object": {"key": "raw/orders/x.csv"}}}
            ]
        }))
        .unwrap();
        let got = created_objects(&event);
        assert_eq!(
            got,
            vec![
                Ok(ObjectRef {
                    bucket: "lake".into(),
                    key: "raw/orders/a b.csv".into()
                }),
                Err(EventError::BadKey {
                    index: 2,
                    raw: "raw/orders/%E2".into()
                }),
                Err(EventError::Incomplete { index: 4 }),
            ]
        );
    }
}
