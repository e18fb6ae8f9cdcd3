//! The SMSC's end of an SMPP 3.4 link, sans-IO, for integration tests and `telepay bench sms`.
//!
//! It answers binds (checking `system_id` and password), `enquire_link`, `submit_sm` (with
//! message ids `1`, `2`, … as decimal text, joining concatenated parts back into the text the
//! handset would show) and `unbind`; it sends `deliver_sm` for payers' texts (split with UDH when
//! long) and for delivery receipts (Appendix B text plus the `receipted_message_id` and
//! `message_state` TLVs), `enquire_link` and `unbind` when told to. Tests can make it refuse
//! submits with `ESME_RTHROTTLED`, `ESME_RMSGQFUL` or any status, go silent (a dead link), or
//! send raw octets.
//!
//! The loop: feed received octets to [`TestSmsc::handle_receive`], call the action methods,
//! and drain [`TestSmsc::poll_output`] until it returns `None`; write every
//! [`SmscOutput::Transmit`] to the socket and close it on [`SmscOutput::Close`].

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm, SubmitSm, SubmitSmResp,
};
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessageState, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};

use super::concat::{self, ConcatInfo, Offer, Reassembler, ReassemblyLimits};
use super::dlr::{self, ReceiptState};
use super::pdu::{self, Frame, PduReader};
use super::session::BindMode;
use super::{SmsError, encoding};

/// The test SMSC's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct SmscConfig {
    /// The `system_id` it gives in bind responses.
    pub smsc_system_id: String,
    /// The ESME `system_id` it accepts.
    pub accept_system_id: String,
    /// The password it accepts. Never printed by `Debug`.
    pub accept_password: String,
    /// The largest PDU it accepts.
    pub pdu_size_max: usize,
}

impl Default for SmscConfig {
    fn default() -> Self {
        SmscConfig {
            smsc_system_id: "TESTSMSC".into(),
            accept_system_id: "telepay".into(),
            accept_password: "secret".into(),
            pdu_size_max: pdu::PDU_SIZE_MAX_DEFAULT,
        }
    }
}

impl fmt::Debug for SmscConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmscConfig")
            .field("smsc_system_id", &self.smsc_system_id)
            .field("accept_system_id", &self.accept_system_id)
            .field("accept_password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A message an ESME submitted, joined from its parts.
#[derive(Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The message id given to the last part (each part gets its own; see `message_ids`).
    pub message_ids: Vec<String>,
    /// `source_addr`.
    pub from: String,
    /// `destination_addr`.
    pub to: String,
    /// The text as the handset would show it.
    pub text: String,
    /// `data_coding` of the parts.
    pub data_coding: u8,
    /// How many parts.
    pub parts: u8,
    /// Whether a delivery receipt was asked for.
    pub registered_delivery: bool,
}

impl fmt::Debug for Submitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submitted")
            .field("message_ids", &self.message_ids)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("text_chars", &self.text.chars().count())
            .field("data_coding", &self.data_coding)
            .field("parts", &self.parts)
            .finish()
    }
}

/// What the test SMSC reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmscEvent {
    /// A bind arrived; `accepted` says whether it was.
    Bind {
        /// The mode asked for.
        mode: BindMode,
        /// The `system_id` given.
        system_id: String,
        /// Whether the credentials matched.
        accepted: bool,
    },
    /// A whole message was submitted (all its parts accepted).
    Submitted(Submitted),
    /// A `submit_sm` was refused on purpose (throttling, queue full, configured status).
    SubmitRefused {
        /// The status sent.
        status: u32,
    },
    /// The ESME answered a `deliver_sm`.
    DeliverAnswered {
        /// The sequence number of the `deliver_sm`.
        sequence_number: u32,
        /// The status of the response.
        status: u32,
    },
    /// The ESME sent `enquire_link`.
    EnquireLink,
    /// The ESME answered our `enquire_link`.
    EnquireLinkAnswered,
    /// The ESME unbound.
    Unbound,
    /// The ESME sent a `generic_nack`.
    GenericNack {
        /// Its sequence number.
        sequence_number: u32,
        /// Its status.
        status: u32,
    },
    /// The ESME sent something that could not be decoded.
    Malformed,
}

/// What the test SMSC asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmscOutput {
    /// Write these octets.
    Transmit(Vec<u8>),
    /// Something happened.
    Event(SmscEvent),
    /// Close the connection.
    Close,
}

#[derive(Debug, Default)]
struct PendingSubmit {
    message_ids: Vec<String>,
    registered_delivery: bool,
}

/// The SMSC's end of one connection.
#[derive(Debug)]
pub struct TestSmsc {
    config: SmscConfig,
    reader: PduReader,
    out: VecDeque<SmscOutput>,
    bound: Option<BindMode>,
    seq: u32,
    next_message_id: u64,
    refuse: VecDeque<CommandStatus>,
    silent: bool,
    reassembler: Reassembler,
    pending: Vec<((String, u16), PendingSubmit)>,
    concat_reference: u8,
}

impl TestSmsc {
    /// A fresh connection.
    pub fn new(config: SmscConfig) -> TestSmsc {
        let reader = PduReader::new(config.pdu_size_max);
        TestSmsc {
            config,
            reader,
            out: VecDeque::new(),
            bound: None,
            seq: 0,
            next_message_id: 1,
            refuse: VecDeque::new(),
            silent: false,
            reassembler: Reassembler::new(ReassemblyLimits {
                parts_max: 255,
                ..ReassemblyLimits::default()
            }),
            pending: Vec::new(),
            concat_reference: 0,
        }
    }

    /// The mode the ESME is bound in, if bound.
    pub fn bound(&self) -> Option<BindMode> {
        self.bound
    }

    /// Refuses the next `n` submits with `status` (e.g. `ESME_RTHROTTLED`).
    pub fn refuse_next(&mut self, n: usize, status: CommandStatus) {
        self.refuse.extend(std::iter::repeat_n(status, n));
    }

    /// Stops answering anything and never closes (a link that died silently), or resumes.
    pub fn set_silent(&mut self, silent: bool) {
        self.silent = silent;
    }

    /// The next thing to do, or `None`.
    pub fn poll_output(&mut self) -> Option<SmscOutput> {
        self.out.pop_front()
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = if self.seq >= 0x7FFF_FFFF {
            1
        } else {
            self.seq + 1
        };
        self.seq
    }

    fn transmit(&mut self, octets: Vec<u8>) {
        if !self.silent {
            self.out.push_back(SmscOutput::Transmit(octets));
        }
    }

    fn close(&mut self) {
        if !self.silent {
            self.out.push_back(SmscOutput::Close);
        }
    }

    fn event(&mut self, event: SmscEvent) {
        self.out.push_back(SmscOutput::Event(event));
    }

    /// Sends raw octets (for malformed-PDU tests).
    pub fn send_raw(&mut self, octets: &[u8]) {
        self.transmit(octets.to_vec());
    }

    /// Sends `enquire_link`.
    pub fn enquire_link(&mut self) {
        let seq = self.next_seq();
        self.transmit(pdu::encode_header_only(
            CommandId::EnquireLink,
            CommandStatus::EsmeRok,
            seq,
        ));
    }

    /// Sends `unbind`.
    pub fn unbind(&mut self) {
        let seq = self.next_seq();
        self.transmit(pdu::encode_header_only(
            CommandId::Unbind,
            CommandStatus::EsmeRok,
            seq,
        ));
    }

    /// Sends a payer's text as `deliver_sm`, split with UDH when long. Returns the sequence
    /// numbers used.
    pub fn deliver_mo(&mut self, from: &str, to: &str, text: &str) -> Result<Vec<u32>, SmsError> {
        let split = concat::split(text, self.concat_reference, 255)?;
        self.concat_reference = self.concat_reference.wrapping_add(1);
        let esm = if split.udh { 0x40 } else { 0x00 };
        let data_coding = split.alphabet.data_coding();
        let mut seqs = Vec::with_capacity(split.parts.len());
        for part in split.parts {
            seqs.push(self.deliver_raw(from, to, esm, data_coding, part, Vec::new())?);
        }
        Ok(seqs)
    }

    /// Sends a delivery receipt for `message_id` as `deliver_sm`.
    pub fn deliver_receipt(
        &mut self,
        from: &str,
        to: &str,
        message_id: &str,
        state: ReceiptState,
    ) -> Result<u32, SmsError> {
        let text = dlr::render(message_id, state, "2401011200", "2401011201");
        let id = COctetString::from_string(message_id.to_owned()).map_err(|_| {
            SmsError::InvalidReceipt {
                reason: "message id not ASCII or too long",
            }
        })?;
        let tlvs = vec![
            MessageDeliveryRequestTlvValue::ReceiptedMessageId(id),
            MessageDeliveryRequestTlvValue::MessageState(MessageState::from(state.tlv_value())),
        ];
        self.deliver_raw(from, to, 0x04, 0, text.into_bytes(), tlvs)
    }

    /// Sends a `deliver_sm` with the given `esm_class`, `data_coding` and `short_message`.
    pub fn deliver_raw(
        &mut self,
        from: &str,
        to: &str,
        esm_class: u8,
        data_coding: u8,
        short_message: Vec<u8>,
        tlvs: Vec<MessageDeliveryRequestTlvValue>,
    ) -> Result<u32, SmsError> {
        let addr = |a: &str| {
            COctetString::<1, 21>::from_string(a.to_owned()).map_err(|_| SmsError::InvalidAddress)
        };
        let short_message =
            OctetString::from_vec(short_message).map_err(|_| SmsError::TextTooLong {
                parts: 1,
                parts_max: 1,
            })?;
        let mut d = DeliverSm::builder()
            .source_addr_ton(Ton::from(1))
            .source_addr_npi(Npi::from(1))
            .source_addr(addr(from)?)
            .dest_addr_ton(Ton::from(0))
            .dest_addr_npi(Npi::from(0))
            .destination_addr(addr(to)?)
            .esm_class(EsmClass::from(esm_class))
            .data_coding(DataCoding::from(data_coding))
            .short_message(short_message)
            .build();
        d.set_tlvs(tlvs);
        let seq = self.next_seq();
        self.transmit(pdu::encode_pdu(CommandStatus::EsmeRok, seq, d));
        Ok(seq)
    }

    /// Feeds octets received from the ESME.
    pub fn handle_receive(&mut self, now: Instant, octets: &[u8]) {
        self.reader.push(octets);
        while let Some(frame) = self.reader.next_frame() {
            match frame {
                Frame::Command(command) => self.handle_command(now, *command),
                Frame::Malformed(m) => {
                    self.event(SmscEvent::Malformed);
                    if m.deserves_nack() {
                        self.transmit(pdu::encode_header_only(
                            CommandId::GenericNack,
                            m.nack_status(),
                            m.header.sequence_number,
                        ));
                    }
                    if !m.recoverable {
                        self.close();
                    }
                }
            }
        }
    }

    fn handle_command(&mut self, now: Instant, command: Command) {
        let seq = command.sequence_number();
        let status = command.status();
        match command.pdu() {
            Some(Pdu::BindTransceiver(b)) => {
                let (id, pw) = (
                    b.system_id.as_str().to_owned(),
                    b.password.as_str().to_owned(),
                );
                self.bind(BindMode::Transceiver, seq, &id, &pw);
            }
            Some(Pdu::BindTransmitter(b)) => {
                let (id, pw) = (
                    b.system_id.as_str().to_owned(),
                    b.password.as_str().to_owned(),
                );
                self.bind(BindMode::Transmitter, seq, &id, &pw);
            }
            Some(Pdu::BindReceiver(b)) => {
                let (id, pw) = (
                    b.system_id.as_str().to_owned(),
                    b.password.as_str().to_owned(),
                );
                self.bind(BindMode::Receiver, seq, &id, &pw);
            }
            Some(Pdu::SubmitSm(sm)) => self.submit(now, seq, sm),
            Some(Pdu::DeliverSmResp(_)) | None if command.id() == CommandId::DeliverSmResp => {
                self.event(SmscEvent::DeliverAnswered {
                    sequence_number: seq,
                    status: u32::from(status),
                });
            }
            Some(Pdu::EnquireLink) => {
                self.event(SmscEvent::EnquireLink);
                self.transmit(pdu::encode_header_only(
                    CommandId::EnquireLinkResp,
                    CommandStatus::EsmeRok,
                    seq,
                ));
            }
            Some(Pdu::EnquireLinkResp) => self.event(SmscEvent::EnquireLinkAnswered),
            Some(Pdu::Unbind) => {
                self.bound = None;
                self.event(SmscEvent::Unbound);
                self.transmit(pdu::encode_header_only(
                    CommandId::UnbindResp,
                    CommandStatus::EsmeRok,
                    seq,
                ));
                self.close();
            }
            Some(Pdu::UnbindResp) => {
                self.bound = None;
                self.close();
            }
            Some(Pdu::GenericNack) | None if command.id() == CommandId::GenericNack => {
                self.event(SmscEvent::GenericNack {
                    sequence_number: seq,
                    status: u32::from(status),
                });
            }
            _ if command.id().is_operation() => {
                self.transmit(pdu::encode_header_only(
                    CommandId::GenericNack,
                    CommandStatus::EsmeRinvcmdid,
                    seq,
                ));
            }
            _ => {}
        }
    }

    fn bind(&mut self, mode: BindMode, seq: u32, system_id: &str, password: &str) {
        let status = if self.bound.is_some() {
            CommandStatus::EsmeRalybnd
        } else if system_id != self.config.accept_system_id {
            CommandStatus::EsmeRinvsysid
        } else if password != self.config.accept_password {
            CommandStatus::EsmeRinvpaswd
        } else {
            CommandStatus::EsmeRok
        };
        let accepted = status == CommandStatus::EsmeRok;
        if accepted {
            self.bound = Some(mode);
        }
        self.event(SmscEvent::Bind {
            mode,
            system_id: system_id.to_owned(),
            accepted,
        });
        let smsc_id = COctetString::from_string(self.config.smsc_system_id.clone())
            .unwrap_or_else(|_| COctetString::empty());
        let pdu: Pdu = match mode {
            BindMode::Transceiver => BindTransceiverResp::new(smsc_id, None).into(),
            BindMode::Transmitter => BindTransmitterResp::new(smsc_id, None).into(),
            BindMode::Receiver => BindReceiverResp::new(smsc_id, None).into(),
        };
        self.transmit(pdu::encode_pdu(status, seq, pdu));
    }

    fn submit(&mut self, now: Instant, seq: u32, sm: &SubmitSm) {
        let refuse = |status| pdu::encode_header_only(CommandId::SubmitSmResp, status, seq);
        if !matches!(
            self.bound,
            Some(BindMode::Transceiver | BindMode::Transmitter)
        ) {
            self.transmit(refuse(CommandStatus::EsmeRinvbndsts));
            return;
        }
        if let Some(status) = self.refuse.pop_front() {
            self.event(SmscEvent::SubmitRefused {
                status: u32::from(status),
            });
            self.transmit(refuse(status));
            return;
        }
        let esm = u8::from(sm.esm_class);
        let data_coding = u8::from(sm.data_coding);
        let body: &[u8] = sm.short_message().as_ref();
        let parsed = if esm & 0x40 != 0 {
            concat::parse_udh(body)
        } else {
            Ok((None, body))
        };
        let Ok((info, text)) = parsed else {
            self.transmit(refuse(CommandStatus::EsmeRinvesmclass));
            return;
        };
        if encoding::decode_text(data_coding, text).is_err() && info.is_none() {
            self.transmit(refuse(CommandStatus::EsmeRinvdcs));
            return;
        }
        let info = info.unwrap_or(ConcatInfo {
            reference: 0,
            wide_reference: false,
            total: 1,
            seq: 1,
        });
        let from = sm.source_addr.as_str().to_owned();
        let to = sm.destination_addr.as_str().to_owned();
        let message_id = self.next_message_id.to_string();
        self.next_message_id += 1;
        let key = (to.clone(), info.reference);
        let index = match self.pending.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.pending.push((key, PendingSubmit::default()));
                self.pending.len() - 1
            }
        };
        if let Some((_, p)) = self.pending.get_mut(index) {
            p.message_ids.push(message_id.clone());
            p.registered_delivery |= u8::from(sm.registered_delivery) & 0x03 != 0;
        }
        let resp = SubmitSmResp::builder()
            .message_id(
                COctetString::from_string(message_id).unwrap_or_else(|_| COctetString::empty()),
            )
            .build();
        match self.reassembler.offer(now, &to, info, data_coding, text) {
            Ok(Offer::Complete {
                data_coding,
                octets,
                parts,
            }) => {
                let pending = self.pending.remove(index).1;
                let text = encoding::decode_text(data_coding, &octets).unwrap_or_default();
                self.transmit(pdu::encode_pdu(CommandStatus::EsmeRok, seq, resp));
                self.event(SmscEvent::Submitted(Submitted {
                    message_ids: pending.message_ids,
                    from,
                    to,
                    text,
                    data_coding,
                    parts,
                    registered_delivery: pending.registered_delivery,
                }));
            }
            Ok(Offer::Pending | Offer::Duplicate) => {
                self.transmit(pdu::encode_pdu(CommandStatus::EsmeRok, seq, resp));
            }
            Err(_) => self.transmit(refuse(CommandStatus::EsmeRinvesmclass)),
        }
    }
}
