//! The messages of the merchant profile as types, over the raw codec.
//!
//! [`ProfileMessage::from_message`] reads a decoded [`Message`] as one of the profile's messages,
//! checking that the fields the profile requires are present and meaningful; fields the profile
//! does not use are ignored. [`ProfileMessage::to_message`] writes it back. Field 48 pairs are
//! written in a fixed order, so a message written by this module reads back and re-encodes to
//! the same bytes.
//!
//! | MTI | direction | fields |
//! |---|---|---|
//! | 0800/0810 | either | 7, 11, 70 (+ 41, 42, 48 `KEY` on sign-on), 39 on 0810 |
//! | 0100/0101 → 0110 | terminal → gateway | 3, 7, 11, 41, 42, optional 4 + 49; 0110 adds 37, 39, 48 `TXN`/`EXP` |
//! | 0200/0201 → 0210 | terminal → gateway | 3, 4, 7, 11, 37, 41, 42, 49; 0210 adds 38, 39 |
//! | 0400/0401 → 0410 | terminal → gateway | 7, 11, 37, 41, 42, 90; 0410 adds 39 |
//! | 0620 → 0630 | gateway → terminal | 7, 11, 37, 41, 42, 48, optional 4 + 49; 0630 has 11, 39 |

use std::fmt;

use super::codec::{CodecError, Message, Mti};
use super::field48::{AdditionalData, Field48Error};

/// Errors reading or writing a profile message: the peer sent a well-formed ISO 8583 message
/// that is not a valid message of the profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    #[error("MTI {0} is not part of the merchant profile")]
    UnknownMti(Mti),
    #[error("field {field} is required in {mti}")]
    Missing { mti: Mti, field: u8 },
    #[error("field {field}: {reason}")]
    Invalid { field: u8, reason: &'static str },
    #[error("field 48 key {key} is required in {mti}")]
    MissingKey { mti: Mti, key: &'static str },
    #[error("field 48 key {key}: {reason}")]
    InvalidKey {
        key: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Field48(#[from] Field48Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

type Result<T> = std::result::Result<T, ProfileError>;

fn invalid(field: u8, reason: &'static str) -> ProfileError {
    ProfileError::Invalid { field, reason }
}

/// Parses a string of ASCII digits (already checked by the codec for numeric fields).
fn digits_u64(text: &str, field: u8) -> Result<u64> {
    text.parse::<u64>()
        .map_err(|_| invalid(field, "not a decimal number"))
}

/// A system trace audit number (field 11): 0 to 999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stan(u32);

impl Stan {
    pub const MAX: u32 = 999_999;
    /// The STAN before the first one a sender uses.
    pub const ZERO: Stan = Stan(0);

    pub fn new(value: u32) -> Option<Stan> {
        (value <= Stan::MAX).then_some(Stan(value))
    }

    pub fn value(self) -> u32 {
        self.0
    }

    /// The next STAN after this one, wrapping from 999999 to 1 (0 is not used for new messages).
    pub fn next(self) -> Stan {
        if self.0 >= Stan::MAX {
            Stan(1)
        } else {
            Stan(self.0 + 1)
        }
    }

    fn parse(text: &str) -> Result<Stan> {
        let value = digits_u64(text, 11)?;
        u32::try_from(value)
            .ok()
            .and_then(Stan::new)
            .ok_or(invalid(11, "out of range"))
    }
}

impl fmt::Display for Stan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

/// Transmission date and time (field 7, `MMDDhhmmss`, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransmissionTime {
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are small by construction (1..=12, 1..=31).
    (year, month as u8, day as u8)
}

impl TransmissionTime {
    /// The UTC date and time of a Unix timestamp.
    pub fn from_unix_seconds(seconds: u64) -> TransmissionTime {
        let days = i64::try_from(seconds / 86_400).unwrap_or(0);
        let (_, month, day) = civil_from_days(days);
        let of_day = seconds % 86_400;
        TransmissionTime {
            month,
            day,
            hour: (of_day / 3600) as u8,
            minute: (of_day / 60 % 60) as u8,
            second: (of_day % 60) as u8,
        }
    }

    pub fn parse(text: &str) -> Result<TransmissionTime> {
        let b = text.as_bytes();
        if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
            return Err(invalid(7, "not ten digits"));
        }
        let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
        let t = TransmissionTime {
            month: two(0),
            day: two(2),
            hour: two(4),
            minute: two(6),
            second: two(8),
        };
        let valid = (1..=12).contains(&t.month)
            && (1..=31).contains(&t.day)
            && t.hour < 24
            && t.minute < 60
            && t.second < 60;
        valid.then_some(t).ok_or(invalid(7, "not a date and time"))
    }
}

impl fmt::Display for TransmissionTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}{:02}{:02}{:02}{:02}",
            self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Reads a fixed `ans` field padded on the right with spaces: at least one non-space character,
/// no leading space.
fn padded_id(text: &str, field: u8) -> Result<String> {
    let trimmed = text.trim_end_matches(' ');
    if trimmed.is_empty() || trimmed.starts_with(' ') {
        return Err(invalid(field, "empty or starts with a space"));
    }
    Ok(trimmed.to_string())
}

fn new_padded_id(text: &str, len_max: usize) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= len_max
        && !text.starts_with(' ')
        && !text.ends_with(' ')
        && text.bytes().all(|b| (0x20..=0x7e).contains(&b));
    ok.then(|| text.to_string())
}

/// Card acceptor terminal id (field 41, `ans8`), held without its padding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TerminalId(String);

impl TerminalId {
    pub const LEN: usize = 8;

    /// 1 to 8 printable ASCII characters, no leading or trailing space.
    pub fn new(text: &str) -> Option<TerminalId> {
        new_padded_id(text, TerminalId::LEN).map(TerminalId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn field(&self) -> String {
        format!("{:<8}", self.0)
    }
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Card acceptor id, our merchant id (field 42, `ans15`), held without its padding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MerchantId(String);

impl MerchantId {
    pub const LEN: usize = 15;

    /// 1 to 15 printable ASCII characters, no leading or trailing space.
    pub fn new(text: &str) -> Option<MerchantId> {
        new_padded_id(text, MerchantId::LEN).map(MerchantId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn field(&self) -> String {
        format!("{:<15}", self.0)
    }
}

impl fmt::Display for MerchantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The gateway's transaction reference, sent as the retrieval reference number (field 37,
/// exactly 12 letters and digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnRef(String);

impl TxnRef {
    pub const LEN: usize = 12;

    pub fn new(text: &str) -> Option<TxnRef> {
        (text.len() == TxnRef::LEN && text.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| TxnRef(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TxnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Authorization id response (field 38, exactly 6 letters and digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthId(String);

impl AuthId {
    pub const LEN: usize = 6;

    pub fn new(text: &str) -> Option<AuthId> {
        (text.len() == AuthId::LEN && text.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| AuthId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// ISO 4217 numeric currency code (field 49).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(u16);

impl Currency {
    pub fn new(code: u16) -> Option<Currency> {
        (code <= 999).then_some(Currency(code))
    }

    pub fn code(self) -> u16 {
        self.0
    }
}

/// An amount in minor units (field 4, at most 12 digits) with its currency (field 49).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Amount {
    minor: u64,
    currency: Currency,
}

impl Amount {
    pub const MINOR_MAX: u64 = 999_999_999_999;

    pub fn new(minor: u64, currency: Currency) -> Option<Amount> {
        (minor <= Amount::MINOR_MAX).then_some(Amount { minor, currency })
    }

    pub fn minor(self) -> u64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    /// Reads fields 4 and 49, which come together or not at all.
    fn read(m: &Message) -> Result<Option<Amount>> {
        match (m.get(4), m.get(49)) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(ProfileError::Missing {
                mti: m.mti(),
                field: 49,
            }),
            (None, Some(_)) => Err(ProfileError::Missing {
                mti: m.mti(),
                field: 4,
            }),
            (Some(minor), Some(code)) => {
                let minor = digits_u64(minor, 4)?;
                let code = u16::try_from(digits_u64(code, 49)?)
                    .ok()
                    .and_then(Currency::new)
                    .ok_or(invalid(49, "out of range"))?;
                Ok(Amount::new(minor, code))
            }
        }
    }

    fn write(self, m: &mut Message) -> Result<()> {
        m.set(4, format!("{:012}", self.minor))?;
        m.set(49, format!("{:03}", self.currency.0))?;
        Ok(())
    }
}

/// Processing code (field 3). The profile knows only purchase, `000000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessingCode(String);

impl ProcessingCode {
    pub fn purchase() -> ProcessingCode {
        ProcessingCode("000000".into())
    }

    pub fn is_purchase(&self) -> bool {
        self.0 == "000000"
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A terminal credential (field 48 `KEY` on sign-on); never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Response code (field 39).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseCode {
    /// `00`
    Approved,
    /// `03`: terminal or merchant unknown, wrong key, or not the terminal signed on.
    InvalidMerchant,
    /// `05`
    DoNotHonour,
    /// `09`: the payment is not final yet; the result follows as an advice.
    InProgress,
    /// `12`: a request the profile does not support (processing code, network code).
    InvalidTransaction,
    /// `13`
    InvalidAmount,
    /// `14`: unknown, used or expired transaction number or reference.
    InvalidTxnNumber,
    /// `30`
    FormatError,
    /// `51`
    InsufficientFunds,
    /// `55`
    IncorrectPin,
    /// `57`
    RefusedByPolicy,
    /// `75`
    PinTriesExceeded,
    /// `91`: the gateway cannot serve the request now; also the answer before sign-on.
    SystemUnavailable,
    /// `94`: same terminal, STAN and MTI as an earlier request, different content.
    DuplicateTransmission,
    /// `96`
    SystemMalfunction,
    /// Any other two letters or digits, as a terminal may send in 0630 or 0810.
    Other([u8; 2]),
}

impl ResponseCode {
    const KNOWN: [(ResponseCode, &'static str); 15] = [
        (ResponseCode::Approved, "00"),
        (ResponseCode::InvalidMerchant, "03"),
        (ResponseCode::DoNotHonour, "05"),
        (ResponseCode::InProgress, "09"),
        (ResponseCode::InvalidTransaction, "12"),
        (ResponseCode::InvalidAmount, "13"),
        (ResponseCode::InvalidTxnNumber, "14"),
        (ResponseCode::FormatError, "30"),
        (ResponseCode::InsufficientFunds, "51"),
        (ResponseCode::IncorrectPin, "55"),
        (ResponseCode::RefusedByPolicy, "57"),
        (ResponseCode::PinTriesExceeded, "75"),
        (ResponseCode::SystemUnavailable, "91"),
        (ResponseCode::DuplicateTransmission, "94"),
        (ResponseCode::SystemMalfunction, "96"),
    ];

    pub fn parse(text: &str) -> Option<ResponseCode> {
        if let Some((code, _)) = ResponseCode::KNOWN.iter().find(|(_, t)| *t == text) {
            return Some(*code);
        }
        let bytes: [u8; 2] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(ResponseCode::Other(bytes))
    }

    pub fn as_str(&self) -> &str {
        match self {
            ResponseCode::Other(bytes) => std::str::from_utf8(bytes).unwrap_or("??"),
            known => ResponseCode::KNOWN
                .iter()
                .find(|(code, _)| code == known)
                .map_or("??", |(_, text)| text),
        }
    }

    pub fn is_approved(self) -> bool {
        self == ResponseCode::Approved
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Network management information code (field 70).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkCode {
    /// `001`
    SignOn,
    /// `002`
    SignOff,
    /// `301`
    Echo,
    /// Any other code, answered with 39=`12`.
    Other(u16),
}

impl NetworkCode {
    fn parse(text: &str) -> Result<NetworkCode> {
        Ok(match digits_u64(text, 70)? {
            1 => NetworkCode::SignOn,
            2 => NetworkCode::SignOff,
            301 => NetworkCode::Echo,
            // Three digits, so below 1000.
            other => NetworkCode::Other(other as u16),
        })
    }

    fn number(self) -> u16 {
        match self {
            NetworkCode::SignOn => 1,
            NetworkCode::SignOff => 2,
            NetworkCode::Echo => 301,
            NetworkCode::Other(n) => n % 1000,
        }
    }
}

/// Original data elements (field 90, n42): the original MTI and STAN, then 32 digits (original
/// transmission time, acquiring and forwarding institution ids) kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginalData {
    pub mti: Mti,
    pub stan: Stan,
    rest: String,
}

impl OriginalData {
    /// Original data naming `mti` and `stan`, with transmission time `transmitted` (or zeros)
    /// and zero institution ids.
    pub fn new(mti: Mti, stan: Stan, transmitted: Option<TransmissionTime>) -> OriginalData {
        let time = transmitted.map_or_else(|| "0".repeat(10), |t| t.to_string());
        OriginalData {
            mti,
            stan,
            rest: format!("{time}{}", "0".repeat(22)),
        }
    }

    fn parse(text: &str) -> Result<OriginalData> {
        let mti = text
            .get(..4)
            .and_then(|t| Mti::parse(t.as_bytes()).ok())
            .ok_or(invalid(90, "original MTI"))?;
        let stan = text
            .get(4..10)
            .map(Stan::parse)
            .transpose()
            .map_err(|_| invalid(90, "original STAN"))?
            .ok_or(invalid(90, "original STAN"))?;
        let rest = text.get(10..).unwrap_or_default().to_string();
        Ok(OriginalData { mti, stan, rest })
    }

    fn field(&self) -> String {
        format!("{}{}{}", self.mti, self.stan, self.rest)
    }
}

/// The event an advice reports (field 48 `EVENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdviceEvent {
    Paired,
    Settled,
    Declined,
    Expired,
    Cancelled,
    Reversed,
}

impl AdviceEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AdviceEvent::Paired => "PAIRED",
            AdviceEvent::Settled => "SETTLED",
            AdviceEvent::Declined => "DECLINED",
            AdviceEvent::Expired => "EXPIRED",
            AdviceEvent::Cancelled => "CANCELLED",
            AdviceEvent::Reversed => "REVERSED",
        }
    }

    pub fn parse(text: &str) -> Option<AdviceEvent> {
        [
            AdviceEvent::Paired,
            AdviceEvent::Settled,
            AdviceEvent::Declined,
            AdviceEvent::Expired,
            AdviceEvent::Cancelled,
            AdviceEvent::Reversed,
        ]
        .into_iter()
        .find(|e| e.as_str() == text)
    }
}

// ---- Field access helpers ----

fn required(m: &Message, field: u8) -> Result<&str> {
    m.get(field).ok_or(ProfileError::Missing {
        mti: m.mti(),
        field,
    })
}

fn read_stan(m: &Message) -> Result<Stan> {
    Stan::parse(required(m, 11)?)
}

fn read_time(m: &Message) -> Result<Option<TransmissionTime>> {
    m.get(7).map(TransmissionTime::parse).transpose()
}

fn read_terminal(m: &Message) -> Result<Option<TerminalId>> {
    m.get(41)
        .map(|t| padded_id(t, 41).map(TerminalId))
        .transpose()
}

fn read_merchant(m: &Message) -> Result<Option<MerchantId>> {
    m.get(42)
        .map(|t| padded_id(t, 42).map(MerchantId))
        .transpose()
}

fn required_terminal(m: &Message) -> Result<TerminalId> {
    read_terminal(m)?.ok_or(ProfileError::Missing {
        mti: m.mti(),
        field: 41,
    })
}

fn required_merchant(m: &Message) -> Result<MerchantId> {
    read_merchant(m)?.ok_or(ProfileError::Missing {
        mti: m.mti(),
        field: 42,
    })
}

fn read_txn_ref(m: &Message) -> Result<Option<TxnRef>> {
    m.get(37)
        .map(|t| TxnRef::new(t).ok_or(invalid(37, "not 12 letters and digits")))
        .transpose()
}

fn required_txn_ref(m: &Message) -> Result<TxnRef> {
    read_txn_ref(m)?.ok_or(ProfileError::Missing {
        mti: m.mti(),
        field: 37,
    })
}

fn read_response(m: &Message) -> Result<ResponseCode> {
    ResponseCode::parse(required(m, 39)?).ok_or(invalid(39, "not a response code"))
}

fn read_processing(m: &Message) -> Result<ProcessingCode> {
    Ok(ProcessingCode(required(m, 3)?.to_string()))
}

fn read_additional(m: &Message) -> Result<AdditionalData> {
    Ok(m.get(48)
        .map(AdditionalData::parse)
        .transpose()?
        .unwrap_or_default())
}

/// An MTI from a literal; evaluated at compile time only, where a bad literal fails the build.
const fn literal(number: u16) -> Mti {
    match Mti::from_number(number) {
        Some(mti) => mti,
        None => panic!("MTI literal out of range"),
    }
}

/// The MTIs of the profile.
pub mod mtis {
    use super::{Mti, literal};

    pub const NETWORK_REQUEST: Mti = literal(800);
    pub const NETWORK_RESPONSE: Mti = literal(810);
    pub const OPEN_REQUEST: Mti = literal(100);
    pub const OPEN_REPEAT: Mti = literal(101);
    pub const OPEN_RESPONSE: Mti = literal(110);
    pub const AMOUNT_REQUEST: Mti = literal(200);
    pub const AMOUNT_REPEAT: Mti = literal(201);
    pub const AMOUNT_RESPONSE: Mti = literal(210);
    pub const REVERSAL_REQUEST: Mti = literal(400);
    pub const REVERSAL_REPEAT: Mti = literal(401);
    pub const REVERSAL_RESPONSE: Mti = literal(410);
    pub const ADVICE: Mti = literal(620);
    pub const ADVICE_RESPONSE: Mti = literal(630);
}

fn request_mti(original: Mti, repeat_mti: Mti, repeat: bool) -> Mti {
    if repeat { repeat_mti } else { original }
}

struct Writer {
    message: Message,
}

impl Writer {
    fn new(mti: Mti) -> Writer {
        Writer {
            message: Message::new(mti),
        }
    }

    fn set(&mut self, field: u8, value: String) -> Result<&mut Writer> {
        self.message.set(field, value)?;
        Ok(self)
    }

    fn opt(&mut self, field: u8, value: Option<String>) -> Result<&mut Writer> {
        if let Some(value) = value {
            self.message.set(field, value)?;
        }
        Ok(self)
    }

    fn amount(&mut self, amount: Option<Amount>) -> Result<&mut Writer> {
        if let Some(amount) = amount {
            amount.write(&mut self.message)?;
        }
        Ok(self)
    }

    fn additional(&mut self, data: &AdditionalData) -> Result<&mut Writer> {
        if !data.is_empty() {
            self.message.set(48, data.to_field()?)?;
        }
        Ok(self)
    }

    fn finish(self) -> Message {
        self.message
    }
}

// ---- The messages ----

/// 0800: network management request (sign-on, sign-off, echo), from either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
    pub stan: Stan,
    pub transmitted: Option<TransmissionTime>,
    pub code: NetworkCode,
    pub terminal_id: Option<TerminalId>,
    pub merchant_id: Option<MerchantId>,
    /// Field 48 `KEY`, the terminal credential on sign-on.
    pub key: Option<Secret>,
}

/// 0810: network management response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkResponse {
    pub stan: Stan,
    pub transmitted: Option<TransmissionTime>,
    pub code: NetworkCode,
    pub response: ResponseCode,
    pub terminal_id: Option<TerminalId>,
    pub merchant_id: Option<MerchantId>,
}

impl NetworkResponse {
    /// The answer to `request`, echoing its STAN, code and ids.
    pub fn answering(
        request: &NetworkRequest,
        response: ResponseCode,
        transmitted: TransmissionTime,
    ) -> NetworkResponse {
        NetworkResponse {
            stan: request.stan,
            transmitted: Some(transmitted),
            code: request.code,
            response,
            terminal_id: request.terminal_id.clone(),
            merchant_id: request.merchant_id.clone(),
        }
    }
}

/// 0100/0101: open a transaction, optionally with its amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub repeat: bool,
    pub stan: Stan,
    pub transmitted: Option<TransmissionTime>,
    pub processing: ProcessingCode,
    pub amount: Option<Amount>,
    pub terminal_id: TerminalId,
    pub merchant_id: MerchantId,
}

/// 0110: the transaction opened (39=`00`, 37, 48 `TXN`/`EXP`) or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenResponse {
    pub stan: Stan,
    pub transmitted: Option<TransmissionTime>,
    pub processing: ProcessingCode,
    pub amount: Option<Amount>,
    pub txn_ref: Option<TxnRef>,
    pub response: ResponseCode,
    pub terminal_id: TerminalId,
    pub merchant_id: MerchantId,
    /// Field 48 `TXN`: the transaction number the payer keys or says.
    pub txn_number: Option<String>,
    /// Field 48 `EXP`: seconds until the transaction number expires.
    pub expires_in_s: Option<u32>,
}

impl OpenResponse {
    /// A refusal of `request` with `response`, echoing its fields.
    pub fn refusing(
        request: &OpenRequest,
        response: ResponseCode,
        transmitted: TransmissionTime,
    ) -> OpenResponse {
        OpenResponse {
            stan: request.stan,
            transmitted: Some(transmitted),
            processing: request.processing.clone(),
            amount: request.amount,
            txn_ref: None,
            response,
            terminal_id: request.terminal_id.clone(),
            merchant_id: request.merchant_id.clone(),
            txn_number: None,
            expires_in_s: None,
        }
    }
}

/// 0200/0201: the purchase amount for an open transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountRequest {
    pub repeat: bool,
    pub stan: Stan,
    pub transmitted: Option<TransmissionTime>,
    pub processing: ProcessingCode,
    pub amount: Amount,
    pub txn_ref: TxnRef,
    pub terminal_id: TerminalId,
    pub merchant_id: MerchantId,
}

/// 0210: the final result (39=`00` with 38, or a decline) or 39=`09` in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountResponse {
    pub stan: Stan,
    pub transmitted: Option<TransmissionTime>,
    pub processing: ProcessingCode,
    pub amount: Amount,
    pub txn_ref: TxnRef,
    pub auth_id: Option<AuthId>,
    pub response: ResponseCode,
    pub terminal_id: TerminalId,
    pub merchant_id: MerchantId,
}

impl AmountResponse {
    pub fn answering(
        request: &AmountRequest,
        response: ResponseCode,
        auth_id: Option<AuthId>,
        transmitted: TransmissionTime,
    ) -> AmountResponse {
        AmountResponse {
            stan: request.stan,
            transmitted: Some(transmitted),
            processing: request.processing.clone(),
            amount: request.amount,
            txn_ref: request.txn_ref.clone(),
            auth_id,
            response,
            terminal_id: request.terminal_id.clone(),
            merchant_id: request.merchant_id.clone(),
        }
    }
}

/// 0400/0401: reversal: cancels an unsettled transaction, reverses a settled one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalRequest {
    pub repeat: bool,
    pub stan: Stan,
    pub transmitted: Option<TransmissionTime>,
    pub txn_ref: TxnRef,
    pub terminal_id: TerminalId,
    pub merchant_id: MerchantId,
    pub original: OriginalData,
}

/// 0410: the reversal's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalResponse {
    pub stan: Stan,
    pub transmitted: Option<TransmissionTime>,
    pub txn_ref: TxnRef,
    pub response: ResponseCode,
    pub terminal_id: TerminalId,
    pub merchant_id: MerchantId,
    pub original: OriginalData,
}

impl ReversalResponse {
    pub fn answering(
        request: &ReversalRequest,
        response: ResponseCode,
        transmitted: TransmissionTime,
    ) -> ReversalResponse {
        ReversalResponse {
            stan: request.stan,
            transmitted: Some(transmitted),
            txn_ref: request.txn_ref.clone(),
            response,
            terminal_id: request.terminal_id.clone(),
            merchant_id: request.merchant_id.clone(),
            original: request.original.clone(),
        }
    }
}

/// What an advice says about a transaction (everything of a 0620 but the link's own fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdviceBody {
    pub txn_ref: TxnRef,
    pub event: AdviceEvent,
    /// Fields 4 + 49, e.g. the settled amount.
    pub amount: Option<Amount>,
    /// `TXN`
    pub txn_number: Option<String>,
    /// `PAYER`: display name.
    pub payer: Option<String>,
    /// `ATTR.<name>`: payer attributes the merchant may see, in order.
    pub attributes: Vec<(String, String)>,
    /// `PORTRAIT`: one-time URL of the payer's portrait.
    pub portrait: Option<String>,
    /// `AUTH`: the agreed authentication method.
    pub auth: Option<String>,
    /// `REASON`: why a transaction was declined.
    pub reason: Option<String>,
}

impl AdviceBody {
    /// An advice of `event` with no details.
    pub fn new(txn_ref: TxnRef, event: AdviceEvent) -> AdviceBody {
        AdviceBody {
            txn_ref,
            event,
            amount: None,
            txn_number: None,
            payer: None,
            attributes: Vec::new(),
            portrait: None,
            auth: None,
            reason: None,
        }
    }

    /// Field 48 in the profile's order: EVENT, TXN, PAYER, ATTR.*, PORTRAIT, AUTH, REASON.
    pub fn additional_data(&self) -> std::result::Result<AdditionalData, Field48Error> {
        let mut data = AdditionalData::new();
        data.push("EVENT", self.event.as_str())?;
        let optional = [("TXN", &self.txn_number), ("PAYER", &self.payer)];
        for (key, value) in optional {
            if let Some(value) = value {
                data.push(key, value.as_str())?;
            }
        }
        for (name, value) in &self.attributes {
            data.push(format!("ATTR.{name}"), value.as_str())?;
        }
        let optional = [
            ("PORTRAIT", &self.portrait),
            ("AUTH", &self.auth),
            ("REASON", &self.reason),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                data.push(key, value.as_str())?;
            }
        }
        data.to_field()?;
        Ok(data)
    }

    fn from_additional(
        txn_ref: TxnRef,
        amount: Option<Amount>,
        data: &AdditionalData,
        mti: Mti,
    ) -> Result<AdviceBody> {
        let event = data
            .get("EVENT")
            .ok_or(ProfileError::MissingKey { mti, key: "EVENT" })?;
        let event = AdviceEvent::parse(event).ok_or(ProfileError::InvalidKey {
            key: "EVENT",
            reason: "unknown event",
        })?;
        let text = |key: &str| data.get(key).map(str::to_string);
        Ok(AdviceBody {
            txn_ref,
            event,
            amount,
            txn_number: text("TXN"),
            payer: text("PAYER"),
            attributes: data
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("ATTR.")
                        .map(|n| (n.to_string(), v.to_string()))
                })
                .collect(),
            portrait: text("PORTRAIT"),
            auth: text("AUTH"),
            reason: text("REASON"),
        })
    }
}

/// 0620: an advice from the gateway to the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub stan: Stan,
    pub transmitted: Option<TransmissionTime>,
    pub terminal_id: Option<TerminalId>,
    pub merchant_id: Option<MerchantId>,
    pub body: AdviceBody,
}

/// 0630: the terminal's acknowledgement of an advice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdviceResponse {
    pub stan: Stan,
    pub transmitted: Option<TransmissionTime>,
    pub txn_ref: Option<TxnRef>,
    pub response: ResponseCode,
    pub terminal_id: Option<TerminalId>,
    pub merchant_id: Option<MerchantId>,
}

/// Any message of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileMessage {
    NetworkRequest(NetworkRequest),
    NetworkResponse(NetworkResponse),
    OpenRequest(OpenRequest),
    OpenResponse(OpenResponse),
    AmountRequest(AmountRequest),
    AmountResponse(AmountResponse),
    ReversalRequest(ReversalRequest),
    ReversalResponse(ReversalResponse),
    Advice(Advice),
    AdviceResponse(AdviceResponse),
}

impl ProfileMessage {
    /// Reads `m` as a message of the profile.
    pub fn from_message(m: &Message) -> Result<ProfileMessage> {
        let number = m.mti().number();
        let repeat = m.mti().is_repeat();
        Ok(match number {
            800 => {
                let additional = read_additional(m)?;
                ProfileMessage::NetworkRequest(NetworkRequest {
                    stan: read_stan(m)?,
                    transmitted: read_time(m)?,
                    code: NetworkCode::parse(required(m, 70)?)?,
                    terminal_id: read_terminal(m)?,
                    merchant_id: read_merchant(m)?,
                    key: additional.get("KEY").map(Secret::new),
                })
            }
            810 => ProfileMessage::NetworkResponse(NetworkResponse {
                stan: read_stan(m)?,
                transmitted: read_time(m)?,
                code: NetworkCode::parse(required(m, 70)?)?,
                response: read_response(m)?,
                terminal_id: read_terminal(m)?,
                merchant_id: read_merchant(m)?,
            }),
            100 | 101 => ProfileMessage::OpenRequest(OpenRequest {
                repeat,
                stan: read_stan(m)?,
                transmitted: read_time(m)?,
                processing: read_processing(m)?,
                amount: Amount::read(m)?,
                terminal_id: required_terminal(m)?,
                merchant_id: required_merchant(m)?,
            }),
            110 => {
                let additional = read_additional(m)?;
                let expires_in_s = additional
                    .get("EXP")
                    .map(|e| {
                        e.parse::<u32>().map_err(|_| ProfileError::InvalidKey {
                            key: "EXP",
                            reason: "not a number of seconds",
                        })
                    })
                    .transpose()?;
                ProfileMessage::OpenResponse(OpenResponse {
                    stan: read_stan(m)?,
                    transmitted: read_time(m)?,
                    processing: read_processing(m)?,
                    amount: Amount::read(m)?,
                    txn_ref: read_txn_ref(m)?,
                    response: read_response(m)?,
                    terminal_id: required_terminal(m)?,
                    merchant_id: required_merchant(m)?,
                    txn_number: additional.get("TXN").map(str::to_string),
                    expires_in_s,
                })
            }
            200 | 201 => ProfileMessage::AmountRequest(AmountRequest {
                repeat,
                stan: read_stan(m)?,
                transmitted: read_time(m)?,
                processing: read_processing(m)?,
                amount: Amount::read(m)?.ok_or(ProfileError::Missing {
                    mti: m.mti(),
                    field: 4,
                })?,
                txn_ref: required_txn_ref(m)?,
                terminal_id: required_terminal(m)?,
                merchant_id: required_merchant(m)?,
            }),
            210 => ProfileMessage::AmountResponse(AmountResponse {
                stan: read_stan(m)?,
                transmitted: read_time(m)?,
                processing: read_processing(m)?,
                amount: Amount::read(m)?.ok_or(ProfileError::Missing {
                    mti: m.mti(),
                    field: 4,
                })?,
                txn_ref: required_txn_ref(m)?,
                auth_id: m
                    .get(38)
                    .map(|a| AuthId::new(a).ok_or(invalid(38, "not 6 letters and digits")))
                    .transpose()?,
                response: read_response(m)?,
                terminal_id: required_terminal(m)?,
                merchant_id: required_merchant(m)?,
            }),
            400 | 401 => ProfileMessage::ReversalRequest(ReversalRequest {
                repeat,
                stan: read_stan(m)?,
                transmitted: read_time(m)?,
                txn_ref: required_txn_ref(m)?,
                terminal_id: required_terminal(m)?,
                merchant_id: required_merchant(m)?,
                original: OriginalData::parse(required(m, 90)?)?,
            }),
            410 => ProfileMessage::ReversalResponse(ReversalResponse {
                stan: read_stan(m)?,
                transmitted: read_time(m)?,
                txn_ref: required_txn_ref(m)?,
                response: read_response(m)?,
                terminal_id: required_terminal(m)?,
                merchant_id: required_merchant(m)?,
                original: OriginalData::parse(required(m, 90)?)?,
            }),
            620 | 621 => {
                let additional = read_additional(m)?;
                ProfileMessage::Advice(Advice {
                    stan: read_stan(m)?,
                    transmitted: read_time(m)?,
                    terminal_id: read_terminal(m)?,
                    merchant_id: read_merchant(m)?,
                    body: AdviceBody::from_additional(
                        required_txn_ref(m)?,
                        Amount::read(m)?,
                        &additional,
                        m.mti(),
                    )?,
                })
            }
            630 => ProfileMessage::AdviceResponse(AdviceResponse {
                stan: read_stan(m)?,
                transmitted: read_time(m)?,
                txn_ref: read_txn_ref(m)?,
                response: read_response(m)?,
                terminal_id: read_terminal(m)?,
                merchant_id: read_merchant(m)?,
            }),
            _ => return Err(ProfileError::UnknownMti(m.mti())),
        })
    }

    /// Writes the message.
    pub fn to_message(&self) -> Result<Message> {
        let time = |t: &Option<TransmissionTime>| t.map(|t| t.to_string());
        let terminal = |t: &Option<TerminalId>| t.as_ref().map(TerminalId::field);
        let merchant = |t: &Option<MerchantId>| t.as_ref().map(MerchantId::field);
        let mut w;
        match self {
            ProfileMessage::NetworkRequest(r) => {
                w = Writer::new(mtis::NETWORK_REQUEST);
                let mut additional = AdditionalData::new();
                if let Some(key) = &r.key {
                    additional.push("KEY", key.expose())?;
                }
                w.opt(7, time(&r.transmitted))?
                    .set(11, r.stan.to_string())?
                    .opt(41, terminal(&r.terminal_id))?
                    .opt(42, merchant(&r.merchant_id))?
                    .additional(&additional)?
                    .set(70, format!("{:03}", r.code.number()))?;
            }
            ProfileMessage::NetworkResponse(r) => {
                w = Writer::new(mtis::NETWORK_RESPONSE);
                w.opt(7, time(&r.transmitted))?
                    .set(11, r.stan.to_string())?
                    .set(39, r.response.to_string())?
                    .opt(41, terminal(&r.terminal_id))?
                    .opt(42, merchant(&r.merchant_id))?
                    .set(70, format!("{:03}", r.code.number()))?;
            }
            ProfileMessage::OpenRequest(r) => {
                w = Writer::new(request_mti(mtis::OPEN_REQUEST, mtis::OPEN_REPEAT, r.repeat));
                w.set(3, r.processing.0.clone())?
                    .amount(r.amount)?
                    .opt(7, time(&r.transmitted))?
                    .set(11, r.stan.to_string())?
                    .set(41, r.terminal_id.field())?
                    .set(42, r.merchant_id.field())?;
            }
            ProfileMessage::OpenResponse(r) => {
                w = Writer::new(mtis::OPEN_RESPONSE);
                let mut additional = AdditionalData::new();
                if let Some(txn) = &r.txn_number {
                    additional.push("TXN", txn.as_str())?;
                }
                if let Some(exp) = r.expires_in_s {
                    additional.push("EXP", exp.to_string())?;
                }
                w.set(3, r.processing.0.clone())?
                    .amount(r.amount)?
                    .opt(7, time(&r.transmitted))?
                    .set(11, r.stan.to_string())?
                    .opt(37, r.txn_ref.as_ref().map(|t| t.0.clone()))?
                    .set(39, r.response.to_string())?
                    .set(41, r.terminal_id.field())?
                    .set(42, r.merchant_id.field())?
                    .additional(&additional)?;
            }
            ProfileMessage::AmountRequest(r) => {
                w = Writer::new(request_mti(
                    mtis::AMOUNT_REQUEST,
                    mtis::AMOUNT_REPEAT,
                    r.repeat,
                ));
                w.set(3, r.processing.0.clone())?
                    .amount(Some(r.amount))?
                    .opt(7, time(&r.transmitted))?
                    .set(11, r.stan.to_string())?
                    .set(37, r.txn_ref.0.clone())?
                    .set(41, r.terminal_id.field())?
                    .set(42, r.merchant_id.field())?;
            }
            ProfileMessage::AmountResponse(r) => {
                w = Writer::new(mtis::AMOUNT_RESPONSE);
                w.set(3, r.processing.0.clone())?
                    .amount(Some(r.amount))?
                    .opt(7, time(&r.transmitted))?
                    .set(11, r.stan.to_string())?
                    .set(37, r.txn_ref.0.clone())?
                    .opt(38, r.auth_id.as_ref().map(|a| a.0.clone()))?
                    .set(39, r.response.to_string())?
                    .set(41, r.terminal_id.field())?
                    .set(42, r.merchant_id.field())?;
            }
            ProfileMessage::ReversalRequest(r) => {
                w = Writer::new(request_mti(
                    mtis::REVERSAL_REQUEST,
                    mtis::REVERSAL_REPEAT,
                    r.repeat,
                ));
                w.opt(7, time(&r.transmitted))?
                    .set(11, r.stan.to_string())?
                    .set(37, r.txn_ref.0.clone())?
                    .set(41, r.terminal_id.field())?
                    .set(42, r.merchant_id.field())?
                    .set(90, r.original.field())?;
            }
            ProfileMessage::ReversalResponse(r) => {
                w = Writer::new(mtis::REVERSAL_RESPONSE);
                w.opt(7, time(&r.transmitted))?
                    .set(11, r.stan.to_string())?
                    .set(37, r.txn_ref.0.clone())?
                    .set(39, r.response.to_string())?
                    .set(41, r.terminal_id.field())?
                    .set(42, r.merchant_id.field())?
                    .set(90, r.original.field())?;
            }
            ProfileMessage::Advice(r) => {
                w = Writer::new(mtis::ADVICE);
                w.amount(r.body.amount)?
                    .opt(7, time(&r.transmitted))?
                    .set(11, r.stan.to_string())?
                    .set(37, r.body.txn_ref.0.clone())?
                    .opt(41, terminal(&r.terminal_id))?
                    .opt(42, merchant(&r.merchant_id))?
                    .additional(&r.body.additional_data()?)?;
            }
            ProfileMessage::AdviceResponse(r) => {
                w = Writer::new(mtis::ADVICE_RESPONSE);
                w.opt(7, time(&r.transmitted))?
                    .set(11, r.stan.to_string())?
                    .opt(37, r.txn_ref.as_ref().map(|t| t.0.clone()))?
                    .set(39, r.response.to_string())?
                    .opt(41, terminal(&r.terminal_id))?
                    .opt(42, merchant(&r.merchant_id))?;
            }
        }
        Ok(w.finish())
    }

    /// The STAN of the message.
    pub fn stan(&self) -> Stan {
        match self {
            ProfileMessage::NetworkRequest(r) => r.stan,
            ProfileMessage::NetworkResponse(r) => r.stan,
            ProfileMessage::OpenRequest(r) => r.stan,
            ProfileMessage::OpenResponse(r) => r.stan,
            ProfileMessage::AmountRequest(r) => r.stan,
            ProfileMessage::AmountResponse(r) => r.stan,
            ProfileMessage::ReversalRequest(r) => r.stan,
            ProfileMessage::ReversalResponse(r) => r.stan,
            ProfileMessage::Advice(r) => r.stan,
            ProfileMessage::AdviceResponse(r) => r.stan,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn terminal() -> TerminalId {
        TerminalId::new("TERM0001").unwrap()
    }

    pub(crate) fn merchant() -> MerchantId {
        MerchantId::new("SHOP42").unwrap()
    }

    pub(crate) fn eur(minor: u64) -> Amount {
        Amount::new(minor, Currency::new(978).unwrap()).unwrap()
    }

    fn round_trip(message: ProfileMessage) {
        let raw = message.to_message().unwrap();
        let bytes = raw.encode();
        let decoded = Message::decode(&bytes).unwrap();
        let back = ProfileMessage::from_message(&decoded).unwrap();
        assert_eq!(back, message);
        assert_eq!(back.to_message().unwrap().encode(), bytes);
    }

    #[test]
    fn every_message_round_trips() {
        let time = TransmissionTime::parse("0314153000").unwrap();
        let t = Some(time);
        let txn_ref = TxnRef::new("000000004711").unwrap();
        let open = OpenRequest {
            repeat: false,
            stan: Stan::new(1).unwrap(),
            transmitted: t,
            processing: ProcessingCode::purchase(),
            amount: Some(eur(1250)),
            terminal_id: terminal(),
            merchant_id: merchant(),
        };
        let amount = AmountRequest {
            repeat: true,
            stan: Stan::new(2).unwrap(),
            transmitted: None,
            processing: ProcessingCode::purchase(),
            amount: eur(1250),
            txn_ref: txn_ref.clone(),
            terminal_id: terminal(),
            merchant_id: merchant(),
        };
        let reversal = ReversalRequest {
            repeat: false,
            stan: Stan::new(3).unwrap(),
            transmitted: t,
            txn_ref: txn_ref.clone(),
            terminal_id: terminal(),
            merchant_id: merchant(),
            original: OriginalData::new(mtis::AMOUNT_REQUEST, Stan::new(2).unwrap(), t),
        };
        let sign_on = NetworkRequest {
            stan: Stan::new(9).unwrap(),
            transmitted: t,
            code: NetworkCode::SignOn,
            terminal_id: Some(terminal()),
            merchant_id: Some(merchant()),
            key: Some(Secret::new("k3y")),
        };
        let mut body = AdviceBody::new(txn_ref.clone(), AdviceEvent::Paired);
        body.payer = Some("Ann B.".into());
        body.attributes = vec![("age_over_18".into(), "yes".into())];
        body.portrait = Some("https://gw.example/p/abc".into());
        body.auth = Some("PIN".into());
        let mut open_ok = OpenResponse::refusing(&open, ResponseCode::Approved, time);
        open_ok.txn_ref = Some(txn_ref.clone());
        open_ok.txn_number = Some("4821937".into());
        open_ok.expires_in_s = Some(300);
        let messages = vec![
            ProfileMessage::NetworkResponse(NetworkResponse::answering(
                &sign_on,
                ResponseCode::Approved,
                time,
            )),
            ProfileMessage::NetworkRequest(sign_on),
            ProfileMessage::OpenResponse(open_ok),
            ProfileMessage::OpenRequest(open),
            ProfileMessage::AmountResponse(AmountResponse::answering(
                &amount,
                ResponseCode::Approved,
                AuthId::new("A1B2C3"),
                time,
            )),
            ProfileMessage::AmountRequest(amount),
            ProfileMessage::ReversalResponse(ReversalResponse::answering(
                &reversal,
                ResponseCode::Approved,
                time,
            )),
            ProfileMessage::ReversalRequest(reversal),
            ProfileMessage::Advice(Advice {
                stan: Stan::new(77).unwrap(),
                transmitted: t,
                terminal_id: Some(terminal()),
                merchant_id: Some(merchant()),
                body,
            }),
            ProfileMessage::AdviceResponse(AdviceResponse {
                stan: Stan::new(77).unwrap(),
                transmitted: None,
                txn_ref: Some(txn_ref),
                response: ResponseCode::Approved,
                terminal_id: Some(terminal()),
                merchant_id: None,
            }),
        ];
        for m in messages {
            round_trip(m);
        }
    }

    #[test]
    fn ids_are_padded_on_the_wire() {
        let m = ProfileMessage::OpenRequest(OpenRequest {
            repeat: false,
            stan: Stan::new(1).unwrap(),
            transmitted: None,
            processing: ProcessingCode::purchase(),
            amount: None,
            terminal_id: TerminalId::new("T1").unwrap(),
            merchant_id: MerchantId::new("M1").unwrap(),
        })
        .to_message()
        .unwrap();
        assert_eq!(m.get(41), Some("T1      "));
        assert_eq!(m.get(42), Some("M1             "));
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        let mut m = Message::new(mtis::AMOUNT_REQUEST);
        m.set(3, "000000").unwrap();
        m.set(11, "000001").unwrap();
        assert_eq!(
            ProfileMessage::from_message(&m),
            Err(ProfileError::Missing {
                mti: mtis::AMOUNT_REQUEST,
                field: 4
            })
        );
        m.set(4, "000000000100").unwrap();
        assert_eq!(
            ProfileMessage::from_message(&m),
            Err(ProfileError::Missing {
                mti: mtis::AMOUNT_REQUEST,
                field: 49
            })
        );
        m.set(49, "978").unwrap();
        m.set(7, "1399000000").unwrap();
        assert!(matches!(
            ProfileMessage::from_message(&m),
            Err(ProfileError::Invalid { field: 7, .. })
        ));
        m.remove(7);
        m.set(37, "SHORT0000000").unwrap();
        m.set(41, "        ").unwrap();
        m.set(42, "M1             ").unwrap();
        assert!(matches!(
            ProfileMessage::from_message(&m),
            Err(ProfileError::Invalid { field: 41, .. })
        ));
        assert_eq!(
            ProfileMessage::from_message(&Message::new(literal(300))),
            Err(ProfileError::UnknownMti(literal(300)))
        );
    }

    #[test]
    fn advice_requires_a_known_event() {
        let mut m = Message::new(mtis::ADVICE);
        m.set(11, "000001").unwrap();
        m.set(37, "000000004711").unwrap();
        m.set(48, "TXN=1").unwrap();
        assert!(matches!(
            ProfileMessage::from_message(&m),
            Err(ProfileError::MissingKey { key: "EVENT", .. })
        ));
        m.set(48, "EVENT=LOST").unwrap();
        assert!(matches!(
            ProfileMessage::from_message(&m),
            Err(ProfileError::InvalidKey { key: "EVENT", .. })
        ));
    }

    #[test]
    fn transmission_time_from_unix_seconds() {
        assert_eq!(
            TransmissionTime::from_unix_seconds(0).to_string(),
            "0101000000"
        );
        // 2000-02-29T23:59:59Z
        assert_eq!(
            TransmissionTime::from_unix_seconds(951_868_799).to_string(),
            "0229235959"
        );
        // 2024-12-31T12:34:56Z
        assert_eq!(
            TransmissionTime::from_unix_seconds(1_735_648_496).to_string(),
            "1231123456"
        );
    }

    #[test]
    fn response_codes_parse_and_print() {
        for text in [
            "00", "03", "05", "09", "12", "13", "14", "30", "51", "55", "57", "75", "91", "94",
            "96", "Z9",
        ] {
            let code = ResponseCode::parse(text).unwrap();
            assert_eq!(code.as_str(), text);
        }
        assert_eq!(ResponseCode::parse("0"), None);
        assert_eq!(ResponseCode::parse("0 "), None);
        assert!(ResponseCode::parse("00").unwrap().is_approved());
    }

    #[test]
    fn stan_wraps_skipping_zero() {
        assert_eq!(Stan::new(999_999).unwrap().next(), Stan::new(1).unwrap());
        assert_eq!(Stan::new(1_000_000), None);
        assert_eq!(Stan::new(5).unwrap().to_string(), "000005");
    }

    #[test]
    fn secret_is_not_debug_printed() {
        let r = NetworkRequest {
            stan: Stan::new(1).unwrap(),
            transmitted: None,
            code: NetworkCode::SignOn,
            terminal_id: None,
            merchant_id: None,
            key: Some(Secret::new("hunter2")),
        };
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
