//! The events log.

use nodewarden_proto::v1::Event;
use prost::Message;

use super::{DEFAULT_EVENT_LIMIT, EVENTS, Record, Store, StoreError};

impl Store {
    /// Appends one event to the log.
    pub fn append_event(&self, event: Event) -> Result<(), StoreError> {
        self.apply(&[Record::Event(event)])
    }

    /// The newest `limit` events (0: 1000) at or after `since_ms`, oldest
    /// first, only `node`'s when given.
    pub fn events(
        &self,
        since_ms: i64,
        node: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let limit = if limit == 0 {
            DEFAULT_EVENT_LIMIT
        } else {
            limit
        } as usize;
        let mut out = Vec::new();
        let mut bad = None;
        self.read(|txn| {
            let events = txn.open_table(EVENTS)?;
            for entry in events.range((since_ms, 0)..)?.rev() {
                let (_, bytes) = entry?;
                match Event::decode(bytes.value()) {
                    Ok(e) if node.is_none_or(|n| n == e.subject) => out.push(e),
                    Ok(_) => {}
                    Err(e) => bad = Some(e),
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(())
        })?;
        if let Some(e) = bad {
            return Err(StoreError::Decode {
                what: "event",
                file: self.file.clone(),
                detail: e.to_string(),
            });
        }
        out.reverse();
        Ok(out)
    }
}
