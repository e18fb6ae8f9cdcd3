//! Delivery receipts: the SMSC's report on a message we submitted with `registered_delivery`.
//!
//! A receipt arrives as a `deliver_sm` whose `esm_class` says "MC delivery receipt". Its facts are
//! in the text, in the de-facto format of SMPP 3.4 Appendix B
//! (`id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`), and/or in the TLVs
//! `receipted_message_id` and `message_state`; where both are present the TLVs win, because they
//! are typed. Keys are matched case-insensitively, fields may come in any order and any of them
//! may be missing; an id is required from one source or the other.

use super::SmsError;

/// The state a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReceiptState {
    /// `ENROUTE` (1): on its way.
    Enroute,
    /// `DELIVRD` (2): delivered to the handset.
    Delivered,
    /// `EXPIRED` (3): validity period over.
    Expired,
    /// `DELETED` (4): deleted by the operator.
    Deleted,
    /// `UNDELIV` (5): undeliverable.
    Undeliverable,
    /// `ACCEPTD` (6): accepted on the subscriber's behalf.
    Accepted,
    /// `UNKNOWN` (7).
    Unknown,
    /// `REJECTD` (8): rejected.
    Rejected,
    /// A state this module does not know.
    Unrecognised,
}

impl ReceiptState {
    /// Parses the `stat:` text of a receipt.
    pub fn from_text(stat: &str) -> ReceiptState {
        match stat.trim().to_ascii_uppercase().as_str() {
            "ENROUTE" => ReceiptState::Enroute,
            "DELIVRD" | "DELIVERED" => ReceiptState::Delivered,
            "EXPIRED" => ReceiptState::Expired,
            "DELETED" => ReceiptState::Deleted,
            "UNDELIV" | "UNDELIVERABLE" => ReceiptState::Undeliverable,
            "ACCEPTD" | "ACCEPTED" => ReceiptState::Accepted,
            "UNKNOWN" => ReceiptState::Unknown,
            "REJECTD" | "REJECTED" => ReceiptState::Rejected,
            _ => ReceiptState::Unrecognised,
        }
    }

    /// Maps the `message_state` TLV value.
    pub fn from_tlv(value: u8) -> ReceiptState {
        match value {
            1 => ReceiptState::Enroute,
            2 => ReceiptState::Delivered,
            3 => ReceiptState::Expired,
            4 => ReceiptState::Deleted,
            5 => ReceiptState::Undeliverable,
            6 => ReceiptState::Accepted,
            7 => ReceiptState::Unknown,
            8 => ReceiptState::Rejected,
            _ => ReceiptState::Unrecognised,
        }
    }

    /// The `message_state` TLV value, for the test SMSC.
    pub fn tlv_value(self) -> u8 {
        match self {
            ReceiptState::Enroute => 1,
            ReceiptState::Delivered => 2,
            ReceiptState::Expired => 3,
            ReceiptState::Deleted => 4,
            ReceiptState::Undeliverable => 5,
            ReceiptState::Accepted => 6,
            ReceiptState::Unknown | ReceiptState::Unrecognised => 7,
            ReceiptState::Rejected => 8,
        }
    }

    /// The seven-letter `stat:` text.
    pub fn text(self) -> &'static str {
        match self {
            ReceiptState::Enroute => "ENROUTE",
            ReceiptState::Delivered => "DELIVRD",
            ReceiptState::Expired => "EXPIRED",
            ReceiptState::Deleted => "DELETED",
            ReceiptState::Undeliverable => "UNDELIV",
            ReceiptState::Accepted => "ACCEPTD",
            ReceiptState::Unknown | ReceiptState::Unrecognised => "UNKNOWN",
            ReceiptState::Rejected => "REJECTD",
        }
    }

    /// True when no further receipt is expected for the message.
    pub fn is_final(self) -> bool {
        !matches!(self, ReceiptState::Enroute | ReceiptState::Accepted)
    }
}

/// A parsed delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// The SMSC's message id, as in `submit_sm_resp` (the TLV) or as the receipt text gives it.
    pub message_id: String,
    /// The reported state.
    pub state: ReceiptState,
    /// The `err:` field (network specific), if any.
    pub error: Option<String>,
    /// The `sub:` field, if any.
    pub submitted: Option<String>,
    /// The `dlvrd:` field, if any.
    pub delivered: Option<String>,
    /// The `submit date:` field (`YYMMDDhhmm[ss]`), if any.
    pub submit_date: Option<String>,
    /// The `done date:` field (`YYMMDDhhmm[ss]`), if any.
    pub done_date: Option<String>,
}

/// The longest receipt text parsed; longer texts are cut here (receipts are at most 255 octets).
const RECEIPT_TEXT_MAX: usize = 512;

const KEYS: [&str; 8] = [
    "id:",
    "sub:",
    "dlvrd:",
    "submit date:",
    "done date:",
    "stat:",
    "err:",
    "text:",
];

/// Finds each key's value in the receipt text. A key counts where it starts the text or follows a
/// space; its value runs to the next key. `text:` takes the rest.
fn fields(text: &str) -> [Option<&str>; 8] {
    let lower = text.to_ascii_lowercase();
    let mut starts: Vec<(usize, usize, usize)> = Vec::new(); // (key index, key start, value start)
    for (k, key) in KEYS.iter().enumerate() {
        let mut from = 0;
        while let Some(pos) = lower.get(from..).and_then(|s| s.find(key)) {
            let at = from + pos;
            let boundary = at == 0 || lower.as_bytes().get(at - 1) == Some(&b' ');
            // "submit date:" contains no other key, but "id:" could appear inside another
            // field's value; the first occurrence at a boundary wins.
            if boundary && !starts.iter().any(|(kk, _, _)| *kk == k) {
                starts.push((k, at, at + key.len()));
                break;
            }
            from = at + 1;
        }
    }
    starts.sort_by_key(|(_, at, _)| *at);
    let mut out = [None; 8];
    for (i, (k, _, value_start)) in starts.iter().enumerate() {
        let end = if KEYS[*k] == "text:" {
            text.len()
        } else {
            starts.get(i + 1).map_or(text.len(), |(_, at, _)| *at)
        };
        if let Some(v) = text.get(*value_start..end.max(*value_start)) {
            out[*k] = Some(v.trim());
        }
    }
    out
}

/// Parses a receipt from its text and its TLVs (`receipted_message_id`, `message_state`).
pub fn parse(
    text: &str,
    receipted_message_id: Option<&str>,
    message_state: Option<u8>,
) -> Result<DeliveryReceipt, SmsError> {
    let text = match text.char_indices().nth(RECEIPT_TEXT_MAX) {
        Some((cut, _)) => &text[..cut],
        None => text,
    };
    let [id, sub, dlvrd, submit_date, done_date, stat, err, _text] = fields(text);
    let message_id = receipted_message_id
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or(id.filter(|s| !s.is_empty()))
        .ok_or(SmsError::InvalidReceipt {
            reason: "no message id",
        })?;
    let state = match (message_state, stat) {
        (Some(v), _) => ReceiptState::from_tlv(v),
        (None, Some(s)) => ReceiptState::from_text(s),
        (None, None) => {
            return Err(SmsError::InvalidReceipt { reason: "no state" });
        }
    };
    let owned = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(DeliveryReceipt {
        message_id: message_id.to_owned(),
        state,
        error: owned(err),
        submitted: owned(sub),
        delivered: owned(dlvrd),
        submit_date: owned(submit_date),
        done_date: owned(done_date),
    })
}

/// Renders receipt text in the Appendix B format, for the test SMSC.
pub fn render(message_id: &str, state: ReceiptState, submit_date: &str, done_date: &str) -> String {
    let delivered = if state == ReceiptState::Delivered {
        "001"
    } else {
        "000"
    };
    format!(
        "id:{message_id} sub:001 dlvrd:{delivered} submit date:{submit_date} done date:{done_date} stat:{} err:000 text:",
        state.text()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_appendix_b_format() {
        let r = parse(
            "id:0123456789 sub:001 dlvrd:001 submit date:2405011200 done date:2405011201 stat:DELIVRD err:000 text:Paid 12.50 EUR",
            None,
            None,
        )
        .unwrap();
        assert_eq!(r.message_id, "0123456789");
        assert_eq!(r.state, ReceiptState::Delivered);
        assert_eq!(r.error.as_deref(), Some("000"));
        assert_eq!(r.submitted.as_deref(), Some("001"));
        assert_eq!(r.delivered.as_deref(), Some("001"));
        assert_eq!(r.submit_date.as_deref(), Some("2405011200"));
        assert_eq!(r.done_date.as_deref(), Some("2405011201"));
    }

    #[test]
    fn tolerates_case_order_and_missing_fields() {
        let r = parse("stat:undeliv id:ab12 Text:whatever id:zz", None, None).unwrap();
        assert_eq!(r.message_id, "ab12");
        assert_eq!(r.state, ReceiptState::Undeliverable);
        assert_eq!(r.error, None);
        assert!(
            !parse("id:1 stat:ENROUTE", None, None)
                .unwrap()
                .state
                .is_final()
        );
    }

    #[test]
    fn tlvs_win_over_text() {
        let r = parse("id:999 stat:DELIVRD", Some("abc"), Some(5)).unwrap();
        assert_eq!(r.message_id, "abc");
        assert_eq!(r.state, ReceiptState::Undeliverable);
        let r = parse("", Some("abc"), Some(2)).unwrap();
        assert_eq!(r.state, ReceiptState::Delivered);
    }

    #[test]
    fn receipts_without_id_or_state_are_errors() {
        assert!(matches!(
            parse("stat:DELIVRD", None, None),
            Err(SmsError::InvalidReceipt { .. })
        ));
        assert!(matches!(
            parse("id:1", None, None),
            Err(SmsError::InvalidReceipt { .. })
        ));
        assert!(matches!(
            parse("id: stat:DELIVRD", Some(" "), None),
            Err(SmsError::InvalidReceipt { .. })
        ));
    }

    #[test]
    fn render_and_parse_agree() {
        let text = render("m7", ReceiptState::Rejected, "2405011200", "2405011200");
        let r = parse(&text, None, None).unwrap();
        assert_eq!(
            (r.message_id.as_str(), r.state),
            ("m7", ReceiptState::Rejected)
        );
    }
}
