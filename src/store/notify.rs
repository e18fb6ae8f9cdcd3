//! Events from other gateway nodes, through PostgreSQL LISTEN/NOTIFY.
//!
//! Every node's writer notifies `telepay_events` inside its commit. This task listens on its own
//! connection and republishes other nodes' events to local subscribers, so a payer calling node
//! B can pay a merchant whose terminal is connected to node A.

use super::writer::{NOTIFY_CHANNEL, Writer};
use crate::settlement::events::from_wire;
use sqlx::postgres::PgListener;
use std::sync::Arc;
use std::time::Duration;

pub fn spawn(url: String, node_id: String, writer: Writer) {
    tokio::spawn(async move {
        loop {
            match listen(&url, &node_id, &writer).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "event listener lost its connection; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

async fn listen(url: &str, node_id: &str, writer: &Writer) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    loop {
        let n = listener.recv().await?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(n.payload()) else {
            continue;
        };
        if v.get("node").and_then(|n| n.as_str()) == Some(node_id) {
            continue;
        }
        let mut any = false;
        for e in v
            .get("events")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(ev) = from_wire(e) {
                any = true;
                let _ = writer.events.send(Arc::new(ev));
            }
        }
        if any {
            writer.outbox_ready.notify_waiters();
        }
    }
}
