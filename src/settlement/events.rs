//! Transaction events on the wire between gateway nodes, and waiting for them.

use super::engine::EventRecord;
use super::lifecycle::EventKind;
use serde_json::Value;

/// The JSON form of an event, as carried by PostgreSQL NOTIFY between nodes.
pub fn to_wire(e: &EventRecord) -> Value {
    serde_json::json!({
        "txn_id": e.txn_id,
        "terminal_id": e.terminal_id,
        "seq": e.seq,
        "at_ms": e.at_ms,
        "kind": e.kind,
    })
}

/// Reads an event back; `None` for anything malformed (another node's newer format, say).
pub fn from_wire(v: &Value) -> Option<EventRecord> {
    Some(EventRecord {
        txn_id: v.get("txn_id")?.as_str()?.to_string(),
        terminal_id: v.get("terminal_id")?.as_str()?.to_string(),
        seq: v.get("seq")?.as_i64()?,
        at_ms: v.get("at_ms")?.as_i64()?,
        kind: serde_json::from_value::<EventKind>(v.get("kind")?.clone()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settlement::lifecycle::DeclineReason;

    #[test]
    fn events_survive_the_wire() {
        let e = EventRecord {
            txn_id: "tx_1".into(),
            terminal_id: "DEMO0001".into(),
            seq: 3,
            at_ms: 42,
            kind: EventKind::Declined {
                reason: DeclineReason::Limit,
                detail: Some("x".into()),
            },
        };
        assert_eq!(from_wire(&to_wire(&e)), Some(e));
        assert_eq!(from_wire(&serde_json::json!({"txn_id": 1})), None);
    }
}
