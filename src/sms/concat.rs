//! Long messages: splitting into parts with a concatenation UDH, and joining received parts.
//!
//! Sending: a text that fits one message (160 GSM septets or 70 UCS-2 code units) goes out
//! without UDH. A longer text is split into parts of 153 septets or 67 code units, each headed by
//! the 8-bit-reference concatenation element (IEI `0x00`: `05 00 03 ref total seq`), with
//! `esm_class` UDHI set by the session. A part never ends in the middle of an escape pair (GSM) or a
//! surrogate pair (UCS-2), so each part decodes on its own. The 6-octet UDH costs 7 septets in
//! GSM 7-bit (48 bits plus one fill bit), hence 153 = 160 - 7.
//!
//! Receiving: the 8-bit (`0x00`) and 16-bit (`0x08`) reference elements and the SAR TLVs are
//! accepted. Parts are kept per (sender, reference, total) until all have arrived, within bounds:
//! at most `parts_max` parts per message, `sets_max` incomplete messages overall and
//! `sets_per_sender_max` per sender, and `set_timeout_ms` for a message to complete. A part
//! received twice is a duplicate and is dropped (the SMSC retransmits when our response was
//! lost). Parts are joined as octets and decoded once, so a sender that splits a surrogate pair
//! or an escape pair across parts is still understood.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::encoding::{self, Alphabet};
use super::{SmsError, gsm7};

/// Septets in one GSM 7-bit message without UDH.
pub const GSM7_SINGLE_SEPTETS: usize = 160;
/// Septets of text in one part of a concatenated GSM 7-bit message.
pub const GSM7_PART_SEPTETS: usize = 153;
/// UTF-16 code units in one UCS-2 message without UDH.
pub const UCS2_SINGLE_UNITS: usize = 70;
/// UTF-16 code units of text in one part of a concatenated UCS-2 message.
pub const UCS2_PART_UNITS: usize = 67;
/// Information element identifier: concatenated short message, 8-bit reference.
pub const IEI_CONCAT_8BIT: u8 = 0x00;
/// Information element identifier: concatenated short message, 16-bit reference.
pub const IEI_CONCAT_16BIT: u8 = 0x08;

/// A text cut into `short_message` bodies ready for `submit_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The alphabet of every part (and so the `data_coding`).
    pub alphabet: Alphabet,
    /// True when the parts start with a UDH (`esm_class` UDHI must be set).
    pub udh: bool,
    /// The `short_message` octets of each part, UDH included.
    pub parts: Vec<Vec<u8>>,
}

/// Splits `text` into parts, using `reference` as the concatenation reference when it needs more
/// than one. More than `parts_max` parts is an error, as is `parts_max` above 255.
pub fn split(text: &str, reference: u8, parts_max: usize) -> Result<Split, SmsError> {
    let alphabet = Alphabet::for_text(text);
    // Each chunk is the encoded text of one part, without UDH.
    let chunks: Vec<Vec<u8>> = match alphabet {
        Alphabet::Gsm7 => {
            let septets = gsm7::encode(text)?;
            if septets.len() <= GSM7_SINGLE_SEPTETS {
                vec![septets]
            } else {
                chunk_gsm7(text)?
            }
        }
        Alphabet::Ucs2 => {
            let units = text.encode_utf16().count();
            if units <= UCS2_SINGLE_UNITS {
                vec![encoding::ucs2_encode(text)]
            } else {
                chunk_ucs2(text)
            }
        }
    };
    let limit = parts_max.min(255);
    if chunks.len() > limit {
        return Err(SmsError::TextTooLong {
            parts: chunks.len(),
            parts_max: limit,
        });
    }
    if chunks.len() == 1 {
        return Ok(Split {
            alphabet,
            udh: false,
            parts: chunks,
        });
    }
    let total = u8::try_from(chunks.len()).map_err(|_| SmsError::TextTooLong {
        parts: chunks.len(),
        parts_max: limit,
    })?;
    let parts = chunks
        .into_iter()
        .zip(1u8..=255)
        .map(|(chunk, seq)| {
            let mut part = Vec::with_capacity(6 + chunk.len());
            part.extend_from_slice(&[0x05, IEI_CONCAT_8BIT, 0x03, reference, total, seq]);
            part.extend_from_slice(&chunk);
            part
        })
        .collect();
    Ok(Split {
        alphabet,
        udh: true,
        parts,
    })
}

/// Cuts GSM 7-bit text into chunks of at most 153 septets without splitting an escape pair.
fn chunk_gsm7(text: &str) -> Result<Vec<Vec<u8>>, SmsError> {
    let mut chunks = Vec::new();
    let mut current = Vec::with_capacity(GSM7_PART_SEPTETS);
    for c in text.chars() {
        let septets = gsm7::char_septets(c).ok_or(SmsError::NotGsm7 { character: c })?;
        if current.len() + septets.len() > GSM7_PART_SEPTETS {
            chunks.push(std::mem::take(&mut current));
        }
        match septets {
            gsm7::Septets::One(s) => current.push(s),
            gsm7::Septets::Escaped(s) => current.extend_from_slice(&[gsm7::ESCAPE, s]),
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    Ok(chunks)
}

/// Cuts text into UCS-2 chunks of at most 67 code units without splitting a surrogate pair.
fn chunk_ucs2(text: &str) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut current: Vec<u8> = Vec::with_capacity(2 * UCS2_PART_UNITS);
    let mut buf = [0u16; 2];
    for c in text.chars() {
        let units = c.encode_utf16(&mut buf);
        if current.len() / 2 + units.len() > UCS2_PART_UNITS {
            chunks.push(std::mem::take(&mut current));
        }
        for unit in units.iter() {
            current.extend_from_slice(&unit.to_be_bytes());
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The concatenation facts of one received part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcatInfo {
    /// The sender's reference, shared by all parts of one message.
    pub reference: u16,
    /// True for a 16-bit reference (IEI 0x08 or SAR TLVs), false for 8-bit (IEI 0x00).
    pub wide_reference: bool,
    /// The number of parts of the message, at least 1.
    pub total: u8,
    /// This part's number, from 1 to `total`.
    pub seq: u8,
}

impl ConcatInfo {
    /// Checks the numbers a sender may get wrong.
    pub fn validate(self) -> Result<ConcatInfo, SmsError> {
        if self.total == 0 {
            return Err(SmsError::InvalidUdh {
                reason: "total parts is zero",
            });
        }
        if self.seq == 0 {
            return Err(SmsError::InvalidUdh {
                reason: "part number is zero",
            });
        }
        if self.seq > self.total {
            return Err(SmsError::InvalidUdh {
                reason: "part number exceeds total parts",
            });
        }
        Ok(self)
    }
}

/// Splits a `short_message` that carries a UDH into its concatenation facts (if any) and the
/// text octets after the UDH. Lengths that lie and impossible part numbers are errors.
pub fn parse_udh(short_message: &[u8]) -> Result<(Option<ConcatInfo>, &[u8]), SmsError> {
    let (&udhl, rest) = short_message.split_first().ok_or(SmsError::InvalidUdh {
        reason: "UDH indicated but message is empty",
    })?;
    let udhl = usize::from(udhl);
    if udhl > rest.len() {
        return Err(SmsError::InvalidUdh {
            reason: "UDH length exceeds message",
        });
    }
    let (mut elements, text) = rest.split_at(udhl);
    let mut concat = None;
    while !elements.is_empty() {
        let [iei, iel, tail @ ..] = elements else {
            return Err(SmsError::InvalidUdh {
                reason: "truncated information element header",
            });
        };
        let iel = usize::from(*iel);
        if iel > tail.len() {
            return Err(SmsError::InvalidUdh {
                reason: "information element length exceeds UDH",
            });
        }
        let (data, next) = tail.split_at(iel);
        match (*iei, data) {
            (IEI_CONCAT_8BIT, [reference, total, seq]) => {
                concat = Some(ConcatInfo {
                    reference: u16::from(*reference),
                    wide_reference: false,
                    total: *total,
                    seq: *seq,
                });
            }
            (IEI_CONCAT_16BIT, [hi, lo, total, seq]) => {
                concat = Some(ConcatInfo {
                    reference: u16::from_be_bytes([*hi, *lo]),
                    wide_reference: true,
                    total: *total,
                    seq: *seq,
                });
            }
            (IEI_CONCAT_8BIT | IEI_CONCAT_16BIT, _) => {
                return Err(SmsError::InvalidUdh {
                    reason: "concatenation element of the wrong length",
                });
            }
            // Other elements (ports, special SMS indications, …) do not concern a text dialogue.
            _ => {}
        }
        elements = next;
    }
    let concat = concat.map(ConcatInfo::validate).transpose()?;
    Ok((concat, text))
}

/// Bounds of the reassembly table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// The most parts one message may announce.
    pub parts_max: u8,
    /// The most incomplete messages kept overall.
    pub sets_max: usize,
    /// The most incomplete messages kept per sender.
    pub sets_per_sender_max: usize,
    /// How long an incomplete message waits for its missing parts.
    pub set_timeout_ms: u64,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            parts_max: 8,
            sets_max: 1024,
            sets_per_sender_max: 4,
            set_timeout_ms: 120_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SetKey {
    from: String,
    reference: u16,
    wide_reference: bool,
    total: u8,
}

#[derive(Debug)]
struct PartialSet {
    data_coding: u8,
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
    expires_at: Instant,
}

/// What became of an offered part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// The message is complete: its parts' octets joined in order, to be decoded with
    /// `data_coding`.
    Complete {
        /// The common `data_coding` of the parts.
        data_coding: u8,
        /// The joined text octets.
        octets: Vec<u8>,
        /// How many parts it had.
        parts: u8,
    },
    /// Stored; more parts are awaited.
    Pending,
    /// This part had already arrived; dropped.
    Duplicate,
}

/// An incomplete message given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The sender.
    pub from: String,
    /// The sender's reference.
    pub reference: u16,
    /// Parts received.
    pub received: usize,
    /// Parts announced.
    pub total: u8,
}

/// Joins the parts of concatenated messages, within [`ReassemblyLimits`].
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    sets: HashMap<SetKey, PartialSet>,
}

impl Reassembler {
    /// An empty table.
    pub fn new(limits: ReassemblyLimits) -> Reassembler {
        Reassembler {
            limits,
            sets: HashMap::new(),
        }
    }

    /// The number of incomplete messages held.
    pub fn pending_sets(&self) -> usize {
        self.sets.len()
    }

    /// Offers one part. `octets` is the part's text after the UDH.
    pub fn offer(
        &mut self,
        now: Instant,
        from: &str,
        info: ConcatInfo,
        data_coding: u8,
        octets: &[u8],
    ) -> Result<Offer, SmsError> {
        let info = info.validate()?;
        if info.total > self.limits.parts_max {
            return Err(SmsError::TooManyParts {
                total: info.total,
                parts_max: self.limits.parts_max,
            });
        }
        if info.total == 1 {
            return Ok(Offer::Complete {
                data_coding,
                octets: octets.to_vec(),
                parts: 1,
            });
        }
        let key = SetKey {
            from: from.to_owned(),
            reference: info.reference,
            wide_reference: info.wide_reference,
            total: info.total,
        };
        if !self.sets.contains_key(&key) {
            self.expire(now);
            if self.sets.len() >= self.limits.sets_max {
                return Err(SmsError::ReassemblyFull);
            }
            let of_sender = self.sets.keys().filter(|k| k.from == from).count();
            if of_sender >= self.limits.sets_per_sender_max {
                return Err(SmsError::ReassemblyFull);
            }
            self.sets.insert(
                key.clone(),
                PartialSet {
                    data_coding,
                    parts: vec![None; usize::from(info.total)],
                    received: 0,
                    expires_at: now + Duration::from_millis(self.limits.set_timeout_ms),
                },
            );
        }
        let Some(set) = self.sets.get_mut(&key) else {
            return Err(SmsError::ReassemblyFull);
        };
        if set.data_coding != data_coding {
            return Err(SmsError::InvalidUdh {
                reason: "parts of one message differ in data_coding",
            });
        }
        let index = usize::from(info.seq - 1);
        let Some(slot) = set.parts.get_mut(index) else {
            return Err(SmsError::InvalidUdh {
                reason: "part number exceeds total parts",
            });
        };
        if slot.is_some() {
            return Ok(Offer::Duplicate);
        }
        *slot = Some(octets.to_vec());
        set.received += 1;
        if set.received < set.parts.len() {
            return Ok(Offer::Pending);
        }
        let Some(set) = self.sets.remove(&key) else {
            return Err(SmsError::ReassemblyFull);
        };
        let octets = set.parts.into_iter().flatten().flatten().collect();
        Ok(Offer::Complete {
            data_coding: set.data_coding,
            octets,
            parts: info.total,
        })
    }

    /// Drops the incomplete messages whose time is up and says which.
    pub fn expire(&mut self, now: Instant) -> Vec<Expired> {
        let mut expired = Vec::new();
        self.sets.retain(|key, set| {
            if set.expires_at <= now {
                expired.push(Expired {
                    from: key.from.clone(),
                    reference: key.reference,
                    received: set.received,
                    total: key.total,
                });
                false
            } else {
                true
            }
        });
        expired
    }

    /// When the next incomplete message expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sets.values().map(|s| s.expires_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reassemble(split: &Split, from: &str) -> String {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let now = Instant::now();
        let dc = split.alphabet.data_coding();
        let mut result = None;
        for part in &split.parts {
            let (info, text) = if split.udh {
                parse_udh(part).unwrap()
            } else {
                (None, part.as_slice())
            };
            let info = info.unwrap_or(ConcatInfo {
                reference: 0,
                wide_reference: false,
                total: 1,
                seq: 1,
            });
            // Each part must decode on its own too.
            encoding::decode_text(dc, text).unwrap();
            if let Offer::Complete {
                data_coding,
                octets,
                ..
            } = r.offer(now, from, info, dc, text).unwrap()
            {
                result = Some(encoding::decode_text(data_coding, &octets).unwrap());
            }
        }
        result.unwrap()
    }

    #[test]
    fn short_texts_are_one_part_without_udh() {
        let s = split(&"a".repeat(160), 1, 8).unwrap();
        assert_eq!(
            (s.parts.len(), s.udh, s.alphabet),
            (1, false, Alphabet::Gsm7)
        );
        let s = split(&"ж".repeat(70), 1, 8).unwrap();
        assert_eq!(
            (s.parts.len(), s.udh, s.alphabet),
            (1, false, Alphabet::Ucs2)
        );
        assert_eq!(s.parts[0].len(), 140);
        let s = split("", 1, 8).unwrap();
        assert_eq!(s.parts, vec![Vec::<u8>::new()]);
    }

    #[test]
    fn gsm7_boundaries() {
        let s = split(&"a".repeat(161), 7, 8).unwrap();
        assert_eq!(s.parts.len(), 2);
        assert!(s.udh);
        assert_eq!(&s.parts[0][..6], &[5, 0, 3, 7, 2, 1]);
        assert_eq!(s.parts[0].len(), 6 + 153);
        assert_eq!(s.parts[1].len(), 6 + 8);
        assert_eq!(split(&"a".repeat(306), 7, 8).unwrap().parts.len(), 2);
        assert_eq!(split(&"a".repeat(307), 7, 8).unwrap().parts.len(), 3);
    }

    #[test]
    fn an_escape_pair_is_never_split() {
        // 152 plain septets, then '€' (2 septets) would end at septet 154: it moves to part two.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let s = split(&text, 9, 8).unwrap();
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.parts[0].len(), 6 + 152);
        assert_eq!(&s.parts[1][6..8], &[0x1B, 0x65]);
        assert_eq!(reassemble(&s, "4917"), text);

        // 151 plain septets then '€' fills part one exactly.
        let text = format!("{}€{}", "a".repeat(151), "b".repeat(10));
        let s = split(&text, 9, 8).unwrap();
        assert_eq!(s.parts[0].len(), 6 + 153);
        assert_eq!(&s.parts[0][157..], &[0x1B, 0x65]);
        assert_eq!(reassemble(&s, "4917"), text);

        // 160 septets in one message when the escapes fit, two parts when they do not.
        let text = format!("{}€", "a".repeat(158));
        assert_eq!(split(&text, 1, 8).unwrap().parts.len(), 1);
        let text = format!("{}€", "a".repeat(159));
        assert_eq!(split(&text, 1, 8).unwrap().parts.len(), 2);
    }

    #[test]
    fn a_surrogate_pair_is_never_split() {
        let text = format!("{}🙂{}", "ж".repeat(66), "ж".repeat(10));
        let s = split(&text, 3, 8).unwrap();
        assert_eq!(s.alphabet, Alphabet::Ucs2);
        assert_eq!(s.parts[0].len(), 6 + 2 * 66);
        assert_eq!(reassemble(&s, "4917"), text);
    }

    #[test]
    fn too_many_parts_is_an_error() {
        assert_eq!(
            split(&"a".repeat(153 * 3 + 1), 1, 3),
            Err(SmsError::TextTooLong {
                parts: 4,
                parts_max: 3
            })
        );
    }

    #[test]
    fn udh_parsing_accepts_both_references_and_skips_other_elements() {
        let (info, text) = parse_udh(&[5, 0, 3, 0xAA, 3, 2, b'x']).unwrap();
        assert_eq!(
            info,
            Some(ConcatInfo {
                reference: 0xAA,
                wide_reference: false,
                total: 3,
                seq: 2
            })
        );
        assert_eq!(text, b"x");
        let (info, _) = parse_udh(&[6, 8, 4, 0x12, 0x34, 2, 1]).unwrap();
        assert_eq!(
            info,
            Some(ConcatInfo {
                reference: 0x1234,
                wide_reference: true,
                total: 2,
                seq: 1
            })
        );
        // A port-addressing element alone: no concatenation.
        let (info, text) = parse_udh(&[6, 5, 4, 0x0B, 0x84, 0x23, 0xF0, b'y']).unwrap();
        assert_eq!((info, text), (None, &b"y"[..]));
    }

    #[test]
    fn absurd_udh_is_rejected() {
        let cases: [&[u8]; 8] = [
            &[],
            &[9, 0, 3, 1, 2, 1], // UDH length beyond the message
            &[5, 0, 9, 1, 2, 1], // element length beyond the UDH
            &[1, 0],             // truncated element header
            &[4, 0, 2, 1, 2],    // concatenation element of the wrong size
            &[5, 0, 3, 1, 0, 1], // zero parts
            &[5, 0, 3, 1, 2, 0], // part zero
            &[5, 0, 3, 1, 2, 3], // part 3 of 2
        ];
        for case in cases {
            assert!(
                matches!(parse_udh(case), Err(SmsError::InvalidUdh { .. })),
                "{case:?}"
            );
        }
    }

    #[test]
    fn reassembly_handles_order_duplicates_and_bounds() {
        let now = Instant::now();
        let limits = ReassemblyLimits {
            parts_max: 3,
            sets_max: 2,
            sets_per_sender_max: 1,
            set_timeout_ms: 1_000,
        };
        let mut r = Reassembler::new(limits);
        let info = |seq| ConcatInfo {
            reference: 1,
            wide_reference: false,
            total: 2,
            seq,
        };
        assert_eq!(
            r.offer(now, "a", info(2), 0, b"lo").unwrap(),
            Offer::Pending
        );
        assert_eq!(
            r.offer(now, "a", info(2), 0, b"lo").unwrap(),
            Offer::Duplicate
        );
        // A second message from the same sender exceeds its share.
        let other = ConcatInfo {
            reference: 2,
            ..info(1)
        };
        assert_eq!(
            r.offer(now, "a", other, 0, b"x"),
            Err(SmsError::ReassemblyFull)
        );
        // Differing data_coding within one message.
        assert!(matches!(
            r.offer(now, "a", info(1), 8, b"he"),
            Err(SmsError::InvalidUdh { .. })
        ));
        assert_eq!(
            r.offer(now, "a", info(1), 0, b"hel").unwrap(),
            Offer::Complete {
                data_coding: 0,
                octets: b"hello".to_vec(),
                parts: 2
            }
        );
        assert_eq!(r.pending_sets(), 0);
        let big = ConcatInfo {
            total: 4,
            ..info(1)
        };
        assert_eq!(
            r.offer(now, "a", big, 0, b"x"),
            Err(SmsError::TooManyParts {
                total: 4,
                parts_max: 3
            })
        );
    }

    #[test]
    fn incomplete_messages_expire() {
        let now = Instant::now();
        let mut r = Reassembler::new(ReassemblyLimits {
            set_timeout_ms: 1_000,
            ..Default::default()
        });
        let info = ConcatInfo {
            reference: 5,
            wide_reference: true,
            total: 3,
            seq: 1,
        };
        assert_eq!(r.offer(now, "b", info, 0, b"x").unwrap(), Offer::Pending);
        assert_eq!(r.next_deadline(), Some(now + Duration::from_millis(1_000)));
        assert!(r.expire(now + Duration::from_millis(999)).is_empty());
        let gone = r.expire(now + Duration::from_millis(1_000));
        assert_eq!(
            gone,
            vec![Expired {
                from: "b".into(),
                reference: 5,
                received: 1,
                total: 3
            }]
        );
        assert_eq!(r.next_deadline(), None);
    }
}
