//! Process-wide counters of the SMS channel, for `GET /metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// What happened to a text or a PDU on the SMPP link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsEvent {
    /// A payer's text arrived (`deliver_sm`).
    TextIn,
    /// A delivery receipt arrived.
    ReceiptIn,
    /// A payer's text was refused (bad coding, too long…).
    RejectedIn,
    /// A PDU from the SMSC could not be read.
    MalformedIn,
    /// The SMSC accepted a text of ours (`submit_sm_resp` OK).
    AcceptedOut,
    /// The SMSC refused a text of ours, or it was not answered.
    FailedOut,
    /// The link went down.
    LinkDown,
}

impl SmsEvent {
    const ALL: [SmsEvent; 7] = [
        SmsEvent::TextIn,
        SmsEvent::ReceiptIn,
        SmsEvent::RejectedIn,
        SmsEvent::MalformedIn,
        SmsEvent::AcceptedOut,
        SmsEvent::FailedOut,
        SmsEvent::LinkDown,
    ];

    fn labels(self) -> (&'static str, &'static str) {
        match self {
            SmsEvent::TextIn => ("in", "text"),
            SmsEvent::ReceiptIn => ("in", "delivery_receipt"),
            SmsEvent::RejectedIn => ("in", "rejected"),
            SmsEvent::MalformedIn => ("in", "malformed"),
            SmsEvent::AcceptedOut => ("out", "accepted"),
            SmsEvent::FailedOut => ("out", "failed"),
            SmsEvent::LinkDown => ("link", "down"),
        }
    }
}

static COUNTS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

pub fn record(event: SmsEvent) {
    COUNTS[event as usize].fetch_add(1, Ordering::Relaxed);
}

pub fn count(event: SmsEvent) -> u64 {
    COUNTS[event as usize].load(Ordering::Relaxed)
}

/// The counters in the Prometheus text format.
pub fn render_prometheus(out: &mut String) {
    out.push_str(
        "# HELP telepay_sms_total SMS texts and PDUs by direction and result.\n\
         # TYPE telepay_sms_total counter\n",
    );
    for e in SmsEvent::ALL {
        let (direction, result) = e.labels();
        out.push_str(&format!(
            "telepay_sms_total{{direction=\"{direction}\",result=\"{result}\"}} {}\n",
            count(e)
        ));
    }
}
