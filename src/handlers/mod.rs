//! What each Lambda does with its event, free of the runtime itself: the binaries in
//! `functions/` deserialize the event, call a handler here and serialize its response.

pub mod alert;
pub mod ingest;
pub mod quality;
pub mod s3_event;
