//! Paying by text: one dialogue per payer's MSISDN, sans-IO.
//!
//! # The loop
//!
//! [`Dialogues`] takes a payer's text ([`Dialogues::handle_text`]), a result from the settlement
//! core ([`Dialogues::handle_result`]) or the passage of time ([`Dialogues::handle_timeout`], due
//! at [`Dialogues::next_deadline`]) and returns [`Action`]s: texts to send and [`CoreRequest`]s to
//! make. Every request carries a [`Ticket`]; the core's answer must come back with it, so an answer
//! that arrives after its dialogue ended (expired, cancelled) is recognised as stale. A stale
//! `Claimed` is released with a `Cancel`, so no transaction stays bound to a dialogue that is gone.
//!
//! # What a payer can text
//!
//! - `PAY 123456785`: case, spaces, `-`, `.` or `:` in the number are tolerated, and `PAY` may be
//!   left out when the text is nothing but the 9 digits (a PIN has at most 8, so this is never
//!   ambiguous). The core claims the number (pairing); the reply names the merchant and the
//!   amount — or says the amount is awaited, and follows up when it arrives — and asks for the
//!   PIN, or NO to cancel.
//! - the PIN (4 to 8 digits) while one is asked for; `NO` or `CANCEL` to cancel; `BAL` (or
//!   `BALANCE`); `HIST` (or `HISTORY`), optionally with a count; `HELP`. Anything else gets the
//!   help text, or a reminder of what is awaited. A text is never echoed back.
//!
//! # Authentication by text
//!
//! The core's `Claimed` result lists the steps agreed for this transaction. By text we carry the
//! PIN and challenge questions (the question is sent, the payer's next text is the answer; like
//! a PIN, it is a [`Secret`] that never reaches `Debug` output). A merchant-side visual check
//! needs nothing from the payer's channel and is left to the core. A voice print cannot be done
//! by text: the dialogue releases the claim (`CoreRequest::Release`, which leaves the
//! transaction open) and tells the payer to call, with the number to key. When no step is asked
//! of the payer, the final confirmation is a `YES`. Once every step is accepted the dialogue asks
//! the core to confirm; the payer's receipt then comes from the receipts outbox, so `Settled`
//! ends the dialogue without a further text. Wrong PINs are counted by the core, which shares the
//! lockout counter with every channel.
//!
//! # Bounds
//!
//! At most `dialogues_max` payments in progress; each expires `dialogue_ttl_ms` after the
//! payer's last text (a claimed payment is then cancelled and the payer told).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::macros::format_description;

use super::money;
use super::receipt::{cut, display_name};

/// A PIN or a challenge answer. `Debug` never shows it, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the keyed hash that checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Names one request and the answer to it: the payer's MSISDN and a serial number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// The payer's number, as the SMSC gave it.
    pub msisdn: String,
    /// Distinguishes dialogues (and one-off queries) of the same payer.
    pub serial: u64,
}

/// An amount in minor units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    /// Minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// One step of the authentication agreed for a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthStep {
    /// The payer's PIN.
    Pin,
    /// One registered challenge question, chosen by the core.
    Challenge {
        /// The question to ask.
        question: String,
    },
    /// A voice print: needs a call.
    VoicePrint,
    /// The merchant compares the payer's portrait: nothing for the payer's channel to do.
    MerchantVisualCheck,
}

/// A recent purchase, for `HIST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The merchant's display name.
    pub merchant_name: String,
    /// What was paid.
    pub amount: Amount,
    /// When.
    pub at: OffsetDateTime,
}

/// What the dialogue asks of the settlement core.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreRequest {
    /// Pair the payer with the transaction of this number.
    Claim {
        /// The dialogue.
        ticket: Ticket,
        /// The transaction number as keyed (digits only, check digit included).
        number: String,
    },
    /// Check the payer's PIN for the claimed transaction.
    SubmitPin {
        /// The dialogue.
        ticket: Ticket,
        /// The PIN.
        pin: Secret,
    },
    /// Check the answer to the challenge question asked.
    SubmitAnswer {
        /// The dialogue.
        ticket: Ticket,
        /// The answer.
        answer: Secret,
    },
    /// Every step passed: this is the payer's final purchase confirmation; settle.
    Confirm {
        /// The dialogue.
        ticket: Ticket,
    },
    /// The payer cancelled, or the dialogue expired: cancel the claimed transaction.
    Cancel {
        /// The dialogue.
        ticket: Ticket,
    },
    /// Give up this channel's claim without cancelling the transaction (the payer will call).
    Release {
        /// The dialogue.
        ticket: Ticket,
    },
    /// The payer's available amount.
    Balance {
        /// The query.
        ticket: Ticket,
    },
    /// The payer's last `n` purchases.
    History {
        /// The query.
        ticket: Ticket,
        /// How many.
        n: u8,
    },
}

/// What the settlement core answers (or tells unasked, with the claim's ticket).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreResult {
    /// The number was claimed: paired with the payer.
    Claimed {
        /// The merchant's display name.
        merchant_name: String,
        /// The amount, if the merchant has sent it already.
        amount: Option<Amount>,
        /// The agreed authentication, in the order to perform it.
        auth_steps: Vec<AuthStep>,
    },
    /// The merchant sent the amount after the claim.
    AmountArrived(Amount),
    /// Someone else is paying this number.
    InUse,
    /// No live transaction has this number (wrong, expired, or a bad check digit).
    InvalidNumber,
    /// This payer may not pay now (blocked, or too many wrong numbers).
    Blocked,
    /// Declined, e.g. for lack of funds.
    Declined {
        /// Why, in words for the payer.
        reason: String,
    },
    /// The PIN or answer was right.
    StepAccepted,
    /// Wrong PIN.
    PinWrong {
        /// Attempts left before the lock.
        tries_left: u32,
    },
    /// Wrong challenge answer.
    AnswerWrong {
        /// Attempts left before the lock.
        tries_left: u32,
    },
    /// Too many wrong attempts: locked, transaction cancelled.
    Locked,
    /// Settled.
    Settled {
        /// The settlement's reference.
        reference: String,
    },
    /// The merchant's and payer's demands cannot be reconciled (claims 22, 25).
    RefusedByPolicy {
        /// Why, in words for the payer.
        reason: String,
    },
    /// The agreed authentication cannot be done by text.
    NeedsCall {
        /// The number to call.
        number_to_call: String,
    },
    /// The transaction was cancelled (as asked, or by the merchant).
    Cancelled,
    /// The transaction expired.
    Expired,
    /// The available amount.
    Balance(Amount),
    /// Recent purchases, newest first.
    History(Vec<HistoryEntry>),
    /// The core could not serve the request now.
    Unavailable,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this text to the payer.
    Reply {
        /// The payer's number.
        to: String,
        /// The text (never a secret).
        text: String,
    },
    /// Make this request to the core, and feed its result back with the same ticket.
    Core(CoreRequest),
}

/// The dialogue table's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogueConfig {
    /// A dialogue expires this long after the payer's last text.
    pub dialogue_ttl_ms: u64,
    /// The most payments in progress.
    pub dialogues_max: usize,
    /// Digits of a transaction number, check digit included.
    pub number_digits: usize,
    /// The shortest PIN.
    pub pin_digits_min: usize,
    /// The longest PIN; below `number_digits`, so a bare number is never taken for a PIN.
    pub pin_digits_max: usize,
    /// Purchases listed by a bare `HIST`.
    pub history_default: u8,
    /// The most purchases `HIST n` lists.
    pub history_max: u8,
    /// The number to call when a payment cannot be made by text and the core gave none.
    pub call_number: String,
    /// The service's name, opening the help text.
    pub brand: String,
}

impl Default for DialogueConfig {
    fn default() -> Self {
        DialogueConfig {
            dialogue_ttl_ms: 5 * 60_000,
            dialogues_max: 10_000,
            number_digits: 9,
            pin_digits_min: 4,
            pin_digits_max: 8,
            history_default: 3,
            history_max: 5,
            call_number: String::new(),
            brand: "telepay".into(),
        }
    }
}

/// What a payer's text says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Pay(String),
    Balance,
    History(Option<u8>),
    Help,
    Cancel,
    Yes,
    /// 4 to 8 digits: a PIN where one is asked for.
    Digits(Secret),
    Other,
}

/// A step the payer performs by text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TextStep {
    Pin,
    Challenge(String),
    /// The final confirmation when no other step is asked of the payer.
    Yes,
}

#[derive(Debug)]
enum Stage {
    /// The claim is with the core.
    Claiming,
    /// Claimed; the merchant has not sent the amount yet.
    AwaitingAmount {
        merchant_name: String,
        steps: Vec<TextStep>,
    },
    /// Asking for step `index`; `waiting` while the core checks it.
    Authenticating {
        merchant_name: String,
        amount: Amount,
        steps: Vec<TextStep>,
        index: usize,
        waiting: bool,
    },
    /// The core is settling.
    Confirming,
    /// The payer cancelled; the core is cancelling.
    Cancelling,
}

#[derive(Debug)]
struct Dialogue {
    serial: u64,
    number: String,
    stage: Stage,
    expires_at: Instant,
}

/// The dialogues of all payers. See the module documentation.
#[derive(Debug)]
pub struct Dialogues {
    config: DialogueConfig,
    table: HashMap<String, Dialogue>,
    serial: u64,
}

impl Dialogues {
    /// An empty table. `pin_digits_max` is lowered below `number_digits` if needed, so that a
    /// bare transaction number is never taken for a PIN.
    pub fn new(mut config: DialogueConfig) -> Dialogues {
        config.pin_digits_max = config
            .pin_digits_max
            .min(config.number_digits.saturating_sub(1));
        config.pin_digits_min = config.pin_digits_min.min(config.pin_digits_max);
        config.history_max = config.history_max.max(1);
        Dialogues {
            config,
            table: HashMap::new(),
            serial: 0,
        }
    }

    /// Payments in progress.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no payment is in progress.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// When the next dialogue expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.values().map(|d| d.expires_at).min()
    }

    fn ticket(&mut self, msisdn: &str) -> Ticket {
        self.serial += 1;
        Ticket {
            msisdn: msisdn.to_owned(),
            serial: self.serial,
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.config.dialogue_ttl_ms)
    }

    /// Handles a payer's text.
    pub fn handle_text(&mut self, now: Instant, from: &str, text: &str) -> Vec<Action> {
        let command = self.parse(text);
        let mut actions = Vec::new();
        let reply = |actions: &mut Vec<Action>, text: String| {
            actions.push(Action::Reply {
                to: from.to_owned(),
                text,
            });
        };
        // Queries that need no dialogue.
        match command {
            Command::Balance => {
                let ticket = self.ticket(from);
                actions.push(Action::Core(CoreRequest::Balance { ticket }));
                return actions;
            }
            Command::History(n) => {
                let n = n
                    .unwrap_or(self.config.history_default)
                    .clamp(1, self.config.history_max);
                let ticket = self.ticket(from);
                actions.push(Action::Core(CoreRequest::History { ticket, n }));
                return actions;
            }
            Command::Help => {
                reply(&mut actions, self.help_text());
                return actions;
            }
            _ => {}
        }
        let ttl = self.ttl();
        let Some(dialogue) = self.table.get_mut(from) else {
            match command {
                Command::Pay(number) => return self.start(now, from, number),
                Command::Cancel => reply(&mut actions, "There is no payment to cancel.".into()),
                _ => reply(&mut actions, self.help_text()),
            }
            return actions;
        };
        dialogue.expires_at = now + ttl;
        let ticket = Ticket {
            msisdn: from.to_owned(),
            serial: dialogue.serial,
        };
        match (&mut dialogue.stage, command) {
            (Stage::Confirming, _) => {
                reply(&mut actions, "Your payment is being processed.".into());
            }
            (Stage::Cancelling, Command::Cancel) => {
                reply(&mut actions, "Your payment is being cancelled.".into());
            }
            (
                Stage::Claiming | Stage::AwaitingAmount { .. } | Stage::Authenticating { .. },
                Command::Cancel,
            ) => {
                dialogue.stage = Stage::Cancelling;
                actions.push(Action::Core(CoreRequest::Cancel { ticket }));
            }
            (Stage::Claiming | Stage::Cancelling, _) => {
                reply(&mut actions, "One moment please.".into());
            }
            (Stage::AwaitingAmount { .. }, Command::Pay(_))
            | (Stage::Authenticating { .. }, Command::Pay(_)) => {
                reply(
                    &mut actions,
                    "You have a payment waiting. Finish it, or reply NO to cancel it first.".into(),
                );
            }
            (Stage::AwaitingAmount { merchant_name, .. }, _) => {
                let text = format!(
                    "Waiting for the amount from {}. Reply NO to cancel.",
                    display_name(merchant_name, 40)
                );
                reply(&mut actions, text);
            }
            (Stage::Authenticating { waiting: true, .. }, _) => {
                reply(&mut actions, "One moment please.".into());
            }
            (
                Stage::Authenticating {
                    merchant_name,
                    amount,
                    steps,
                    index,
                    waiting,
                },
                command,
            ) => {
                let step = steps.get(*index).cloned().unwrap_or(TextStep::Yes);
                match (step, command) {
                    (TextStep::Pin, Command::Digits(pin)) => {
                        *waiting = true;
                        actions.push(Action::Core(CoreRequest::SubmitPin { ticket, pin }));
                    }
                    (TextStep::Challenge(_), Command::Digits(answer)) => {
                        *waiting = true;
                        actions.push(Action::Core(CoreRequest::SubmitAnswer { ticket, answer }));
                    }
                    (TextStep::Challenge(_), Command::Other | Command::Yes) => {
                        *waiting = true;
                        let answer = Secret::new(text.trim());
                        actions.push(Action::Core(CoreRequest::SubmitAnswer { ticket, answer }));
                    }
                    (TextStep::Yes, Command::Yes) => {
                        dialogue.stage = Stage::Confirming;
                        actions.push(Action::Core(CoreRequest::Confirm { ticket }));
                    }
                    // Anything else: remind the payer what they are paying and what is awaited.
                    (step, _) => reply(&mut actions, offer_text(merchant_name, amount, &step)),
                }
            }
        }
        actions
    }

    fn start(&mut self, now: Instant, from: &str, number: String) -> Vec<Action> {
        if self.table.len() >= self.config.dialogues_max {
            let mut actions = self.handle_timeout(now);
            if self.table.len() >= self.config.dialogues_max {
                actions.push(Action::Reply {
                    to: from.to_owned(),
                    text: "Sorry, too many payments right now. Please try again in a few minutes."
                        .into(),
                });
                return actions;
            }
        }
        let ticket = self.ticket(from);
        let expires_at = now + self.ttl();
        self.table.insert(
            from.to_owned(),
            Dialogue {
                serial: ticket.serial,
                number: number.clone(),
                stage: Stage::Claiming,
                expires_at,
            },
        );
        vec![Action::Core(CoreRequest::Claim { ticket, number })]
    }

    /// Handles the core's answer to a request made with `ticket`.
    pub fn handle_result(
        &mut self,
        now: Instant,
        ticket: Ticket,
        result: CoreResult,
    ) -> Vec<Action> {
        let _ = now;
        let to = ticket.msisdn.clone();
        let reply = |text: String| Action::Reply {
            to: to.clone(),
            text,
        };
        // Answers to queries need no dialogue.
        match result {
            CoreResult::Balance(amount) => {
                let text = format!(
                    "Your available amount is {}.",
                    money::format_amount(amount.amount_minor, &amount.currency)
                );
                return vec![reply(text)];
            }
            CoreResult::History(entries) => return vec![reply(history_text(&entries))],
            _ => {}
        }
        let current = self
            .table
            .get(&ticket.msisdn)
            .is_some_and(|d| d.serial == ticket.serial);
        if !current {
            // The dialogue is gone: a claim that outlived it must not stay bound to it.
            if let CoreResult::Claimed { .. } = result {
                return vec![Action::Core(CoreRequest::Cancel { ticket })];
            }
            if let CoreResult::Unavailable = result {
                return vec![reply(unavailable_text().into())];
            }
            return Vec::new();
        }
        let Some(dialogue) = self.table.get_mut(&ticket.msisdn) else {
            return Vec::new();
        };
        let mut end = false;
        let mut actions = Vec::new();
        match (&mut dialogue.stage, result) {
            (
                Stage::Claiming,
                CoreResult::Claimed {
                    merchant_name,
                    amount,
                    auth_steps,
                },
            ) => {
                if auth_steps.contains(&AuthStep::VoicePrint) {
                    end = true;
                    actions.push(Action::Core(CoreRequest::Release {
                        ticket: ticket.clone(),
                    }));
                    actions.push(reply(call_text(&self.config.call_number, &dialogue.number)));
                } else {
                    let mut steps: Vec<TextStep> = auth_steps
                        .into_iter()
                        .filter_map(|s| match s {
                            AuthStep::Pin => Some(TextStep::Pin),
                            AuthStep::Challenge { question } => Some(TextStep::Challenge(question)),
                            _ => None,
                        })
                        .collect();
                    if steps.is_empty() {
                        steps.push(TextStep::Yes);
                    }
                    match amount {
                        Some(amount) => {
                            actions.push(reply(offer_text(
                                &merchant_name,
                                &amount,
                                steps.first().unwrap_or(&TextStep::Yes),
                            )));
                            dialogue.stage = Stage::Authenticating {
                                merchant_name,
                                amount,
                                steps,
                                index: 0,
                                waiting: false,
                            };
                        }
                        None => {
                            actions.push(reply(format!(
                                "Paying {}. Waiting for the amount from the merchant...",
                                display_name(&merchant_name, 40)
                            )));
                            dialogue.stage = Stage::AwaitingAmount {
                                merchant_name,
                                steps,
                            };
                        }
                    }
                }
            }
            (
                Stage::AwaitingAmount {
                    merchant_name,
                    steps,
                },
                CoreResult::AmountArrived(amount),
            ) => {
                let (merchant_name, steps) = (std::mem::take(merchant_name), std::mem::take(steps));
                actions.push(reply(offer_text(
                    &merchant_name,
                    &amount,
                    steps.first().unwrap_or(&TextStep::Yes),
                )));
                dialogue.stage = Stage::Authenticating {
                    merchant_name,
                    amount,
                    steps,
                    index: 0,
                    waiting: false,
                };
            }
            (
                Stage::Authenticating {
                    steps,
                    index,
                    waiting: true,
                    ..
                },
                CoreResult::StepAccepted,
            ) => {
                *index += 1;
                match steps.get(*index) {
                    Some(step) => {
                        let prompt = step_prompt(step).to_owned();
                        if let Stage::Authenticating { waiting, .. } = &mut dialogue.stage {
                            *waiting = false;
                        }
                        actions.push(reply(prompt));
                    }
                    None => {
                        dialogue.stage = Stage::Confirming;
                        actions.push(Action::Core(CoreRequest::Confirm {
                            ticket: ticket.clone(),
                        }));
                    }
                }
            }
            (
                Stage::Authenticating { waiting, .. },
                CoreResult::PinWrong { tries_left } | CoreResult::AnswerWrong { tries_left },
            ) => {
                *waiting = false;
                let what = if let Stage::Authenticating { steps, index, .. } = &dialogue.stage {
                    match steps.get(*index) {
                        Some(TextStep::Challenge(_)) => "answer",
                        _ => "PIN",
                    }
                } else {
                    "PIN"
                };
                let tries = if tries_left == 1 { "try" } else { "tries" };
                actions.push(reply(format!(
                    "Wrong {what}, {tries_left} {tries} left. Reply with your {what} to pay, or NO to cancel."
                )));
            }
            (_, CoreResult::Locked) => {
                end = true;
                actions.push(reply(
                    "Too many wrong attempts: payments are locked for now. Nothing was paid."
                        .into(),
                ));
            }
            (Stage::Confirming | Stage::Cancelling, CoreResult::Settled { .. }) => {
                // The receipt comes from the receipts outbox; it is the answer to the PIN.
                end = true;
            }
            (Stage::Cancelling, CoreResult::Cancelled) => {
                end = true;
                actions.push(reply("Payment cancelled. Nothing was paid.".into()));
            }
            (_, CoreResult::Cancelled) => {
                end = true;
                actions.push(reply(
                    "The merchant cancelled the payment. Nothing was paid.".into(),
                ));
            }
            (_, CoreResult::Expired) => {
                end = true;
                actions.push(reply(
                    "The payment request has expired. Nothing was paid.".into(),
                ));
            }
            (_, CoreResult::InUse) => {
                end = true;
                actions.push(reply(
                    "That number is already being paid. Check the number the merchant shows."
                        .into(),
                ));
            }
            (_, CoreResult::InvalidNumber) => {
                end = true;
                actions.push(reply(
                    "That number is not valid or has expired. Check the number the merchant shows and text PAY and the number."
                        .into(),
                ));
            }
            (_, CoreResult::Blocked) => {
                end = true;
                actions.push(reply(
                    "Payments from this phone are blocked for now.".into(),
                ));
            }
            (_, CoreResult::Declined { reason }) => {
                end = true;
                actions.push(reply(format!(
                    "Payment declined: {}. Nothing was paid.",
                    cut(&reason, 80)
                )));
            }
            (_, CoreResult::RefusedByPolicy { reason }) => {
                end = true;
                actions.push(reply(format!(
                    "This payment cannot be made: {}. Nothing was paid.",
                    cut(&reason, 80)
                )));
            }
            (_, CoreResult::NeedsCall { number_to_call }) => {
                end = true;
                actions.push(reply(call_text(&number_to_call, &dialogue.number)));
            }
            (Stage::Confirming, CoreResult::Unavailable) => {
                end = true;
                actions.push(reply(
                    "Sorry, something went wrong. If the payment was made, your receipt will follow."
                        .into(),
                ));
            }
            (_, CoreResult::Unavailable) => {
                end = true;
                actions.push(reply(unavailable_text().into()));
            }
            // Anything else does not fit the stage (a duplicate, a late answer): ignore it.
            _ => {}
        }
        if end {
            self.table.remove(&ticket.msisdn);
        }
        actions
    }

    /// Expires dialogues whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let expired: Vec<String> = self
            .table
            .iter()
            .filter(|(_, d)| d.expires_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut actions = Vec::new();
        for msisdn in expired {
            let Some(d) = self.table.remove(&msisdn) else {
                continue;
            };
            let ticket = Ticket {
                msisdn: msisdn.clone(),
                serial: d.serial,
            };
            match d.stage {
                Stage::Claiming | Stage::AwaitingAmount { .. } | Stage::Authenticating { .. } => {
                    actions.push(Action::Core(CoreRequest::Cancel { ticket }));
                    actions.push(Action::Reply {
                        to: msisdn,
                        text: "Your payment request has expired. Nothing was paid.".into(),
                    });
                }
                // Settling cannot be undone: its outcome arrives as a receipt. A cancel already
                // sent needs nothing more.
                Stage::Confirming | Stage::Cancelling => {}
            }
        }
        actions
    }

    fn help_text(&self) -> String {
        format!(
            "{}: to pay, text PAY and the {}-digit number the merchant shows, e.g. PAY 123456785. BAL: balance. HIST: recent payments. NO: cancel.",
            display_name(&self.config.brand, 20),
            self.config.number_digits
        )
    }

    fn parse(&self, text: &str) -> Command {
        let upper = text.trim().to_ascii_uppercase();
        let word = upper.trim_end_matches(['.', '!', '?']).trim();
        match word {
            "BAL" | "BALANCE" => return Command::Balance,
            "HELP" | "?" | "" => return Command::Help,
            "NO" | "N" | "CANCEL" => return Command::Cancel,
            "YES" | "Y" | "OK" => return Command::Yes,
            _ => {}
        }
        if text.trim() == "?" {
            return Command::Help;
        }
        for keyword in ["HISTORY", "HIST"] {
            if let Some(rest) = word.strip_prefix(keyword) {
                let rest = rest.trim();
                if rest.is_empty() {
                    return Command::History(None);
                }
                if let Ok(n) = rest.parse::<u8>() {
                    return Command::History(Some(n));
                }
            }
        }
        let digits_of = |s: &str| -> Option<String> {
            let kept: String = s
                .chars()
                .filter(|c| !matches!(c, ' ' | '-' | '.' | ':' | '#' | '\t'))
                .collect();
            (!kept.is_empty() && kept.chars().all(|c| c.is_ascii_digit())).then_some(kept)
        };
        if let Some(rest) = word.strip_prefix("PAY") {
            return match digits_of(rest) {
                Some(number) if number.len() == self.config.number_digits => Command::Pay(number),
                _ if rest.trim().is_empty() => Command::Help,
                _ => Command::Other,
            };
        }
        match digits_of(&upper) {
            Some(number) if number.len() == self.config.number_digits => Command::Pay(number),
            Some(pin)
                if (self.config.pin_digits_min..=self.config.pin_digits_max)
                    .contains(&pin.len()) =>
            {
                Command::Digits(Secret::new(pin))
            }
            _ => Command::Other,
        }
    }
}

fn step_prompt(step: &TextStep) -> &'static str {
    match step {
        TextStep::Pin => "Reply with your PIN to pay, or NO to cancel.",
        TextStep::Challenge(_) => {
            "Reply with the answer to the security question, or NO to cancel."
        }
        TextStep::Yes => "Reply YES to pay, or NO to cancel.",
    }
}

fn offer_text(merchant_name: &str, amount: &Amount, first: &TextStep) -> String {
    let head = format!(
        "Pay {} to {}?",
        money::format_amount(amount.amount_minor, &amount.currency),
        display_name(merchant_name, 40)
    );
    match first {
        TextStep::Challenge(question) => format!(
            "{head} Security question: {} Reply with your answer, or NO to cancel.",
            cut(question, 80)
        ),
        step => format!("{head} {}", step_prompt(step)),
    }
}

fn call_text(number_to_call: &str, number: &str) -> String {
    if number_to_call.is_empty() {
        format!(
            "This payment needs a check that cannot be done by text. Please call us and key the number {number}."
        )
    } else {
        format!(
            "This payment needs a check that cannot be done by text. Please call {number_to_call} and key the number {number}."
        )
    }
}

fn unavailable_text() -> &'static str {
    "Sorry, the service is unavailable right now. Please try again later."
}

fn history_text(entries: &[HistoryEntry]) -> String {
    if entries.is_empty() {
        return "No recent payments.".into();
    }
    let date = format_description!("[day].[month].");
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e.at.format(&date).unwrap_or_default(),
                display_name(&e.merchant_name, 24),
                money::format_amount(e.amount.amount_minor, &e.amount.currency)
            )
        })
        .collect();
    format!("Recent payments: {}", items.join("; "))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const PAYER: &str = "491701234567";

    fn eur(amount_minor: i64) -> Amount {
        Amount {
            amount_minor,
            currency: "EUR".into(),
        }
    }

    struct Harness {
        now: Instant,
        d: Dialogues,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                now: Instant::now(),
                d: Dialogues::new(DialogueConfig {
                    call_number: "+49 800 1234".into(),
                    ..DialogueConfig::default()
                }),
            }
        }

        fn text(&mut self, text: &str) -> Vec<Action> {
            self.d.handle_text(self.now, PAYER, text)
        }

        fn result(&mut self, ticket: &Ticket, result: CoreResult) -> Vec<Action> {
            self.d.handle_result(self.now, ticket.clone(), result)
        }

        /// Texts `text` and returns the single core request it causes.
        fn request(&mut self, text: &str) -> CoreRequest {
            match self.text(text).as_slice() {
                [Action::Core(r)] => r.clone(),
                other => panic!("expected one core request for {text:?}, got {other:?}"),
            }
        }

        fn claim(&mut self, amount: Option<Amount>, steps: Vec<AuthStep>) -> (Ticket, Vec<Action>) {
            let CoreRequest::Claim { ticket, number } = self.request("PAY 123456785") else {
                panic!("not a claim");
            };
            assert_eq!(number, "123456785");
            let actions = self.result(
                &ticket,
                CoreResult::Claimed {
                    merchant_name: "Café Central".into(),
                    amount,
                    auth_steps: steps,
                },
            );
            (ticket, actions)
        }
    }

    fn replies(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Reply { text, .. } => Some(text.clone()),
                Action::Core(_) => None,
            })
            .collect()
    }

    #[test]
    fn pay_is_parsed_tolerantly() {
        let h = Harness::new();
        for text in [
            "PAY 123456785",
            "pay 123456785",
            "  Pay 123 456 785 ",
            "PAY123456785",
            "PAY: 123-456-785",
            "123456785",
            "123 456 785",
        ] {
            assert_eq!(
                h.d.parse(text),
                Command::Pay("123456785".into()),
                "{text:?}"
            );
        }
        assert_eq!(h.d.parse("PAY 12345678"), Command::Other);
        assert_eq!(h.d.parse("PAY 1234567855"), Command::Other);
        assert_eq!(h.d.parse("PAYMENT"), Command::Other);
        assert_eq!(h.d.parse("pay"), Command::Help);
        assert_eq!(h.d.parse("bal"), Command::Balance);
        assert_eq!(h.d.parse("Balance."), Command::Balance);
        assert_eq!(h.d.parse("hist"), Command::History(None));
        assert_eq!(h.d.parse("HIST 4"), Command::History(Some(4)));
        assert_eq!(h.d.parse("help"), Command::Help);
        assert_eq!(h.d.parse("?"), Command::Help);
        assert_eq!(h.d.parse("No"), Command::Cancel);
        assert_eq!(h.d.parse("cancel"), Command::Cancel);
        assert_eq!(h.d.parse("1234"), Command::Digits(Secret::new("1234")));
        assert_eq!(h.d.parse("12 34"), Command::Digits(Secret::new("1234")));
        assert_eq!(h.d.parse("123"), Command::Other);
        assert_eq!(h.d.parse("hello"), Command::Other);
    }

    #[test]
    fn anything_else_gets_the_help_text() {
        let mut h = Harness::new();
        for text in ["hello", "HELP", "1234", "PAY 12"] {
            let r = replies(&h.text(text));
            assert_eq!(r.len(), 1);
            assert!(r[0].starts_with("telepay: to pay, text PAY"), "{r:?}");
            assert!(!r[0].contains("1234 "), "never echo");
        }
        assert!(h.d.is_empty());
        assert_eq!(
            replies(&h.text("NO")),
            vec!["There is no payment to cancel.".to_string()]
        );
    }

    #[test]
    fn a_payment_by_pin() {
        let mut h = Harness::new();
        let (ticket, actions) = h.claim(Some(eur(1250)), vec![AuthStep::Pin]);
        assert_eq!(
            replies(&actions),
            vec!["Pay 12.50 EUR to Café Central? Reply with your PIN to pay, or NO to cancel."]
        );
        let CoreRequest::SubmitPin { ticket: t, pin } = h.request("4321") else {
            panic!()
        };
        assert_eq!((t.clone(), pin.expose()), (ticket.clone(), "4321"));
        // A second text while the PIN is checked does not submit again.
        assert_eq!(replies(&h.text("4321")), vec!["One moment please."]);
        let actions = h.result(&ticket, CoreResult::StepAccepted);
        assert_eq!(
            actions,
            vec![Action::Core(CoreRequest::Confirm {
                ticket: ticket.clone()
            })]
        );
        assert_eq!(
            replies(&h.text("1234")),
            vec!["Your payment is being processed."]
        );
        // Settled: the receipt comes from the outbox, the dialogue ends without a text.
        let actions = h.result(
            &ticket,
            CoreResult::Settled {
                reference: "K7Q2M9".into(),
            },
        );
        assert!(actions.is_empty());
        assert!(h.d.is_empty());
    }

    #[test]
    fn waiting_for_the_amount() {
        let mut h = Harness::new();
        let (ticket, actions) = h.claim(None, vec![AuthStep::Pin]);
        assert_eq!(
            replies(&actions),
            vec!["Paying Café Central. Waiting for the amount from the merchant..."]
        );
        assert_eq!(
            replies(&h.text("4321")),
            vec!["Waiting for the amount from Café Central. Reply NO to cancel."]
        );
        let actions = h.result(&ticket, CoreResult::AmountArrived(eur(300)));
        assert_eq!(
            replies(&actions),
            vec!["Pay 3.00 EUR to Café Central? Reply with your PIN to pay, or NO to cancel."]
        );
        assert!(matches!(h.request("4321"), CoreRequest::SubmitPin { .. }));
    }

    #[test]
    fn wrong_pin_then_locked() {
        let mut h = Harness::new();
        let (ticket, _) = h.claim(Some(eur(1250)), vec![AuthStep::Pin]);
        h.request("1111");
        let r = replies(&h.result(&ticket, CoreResult::PinWrong { tries_left: 2 }));
        assert_eq!(
            r,
            vec!["Wrong PIN, 2 tries left. Reply with your PIN to pay, or NO to cancel."]
        );
        h.request("2222");
        let r = replies(&h.result(&ticket, CoreResult::PinWrong { tries_left: 1 }));
        assert_eq!(
            r,
            vec!["Wrong PIN, 1 try left. Reply with your PIN to pay, or NO to cancel."]
        );
        h.request("3333");
        let r = replies(&h.result(&ticket, CoreResult::Locked));
        assert!(r[0].starts_with("Too many wrong attempts"));
        assert!(h.d.is_empty());
        // Nothing of the PINs shows in any text or in Debug output.
        let all = format!("{:?}", h.d);
        assert!(!all.contains("3333"));
        assert!(
            !format!(
                "{:?}",
                CoreRequest::SubmitPin {
                    ticket,
                    pin: Secret::new("3333")
                }
            )
            .contains("3333")
        );
    }

    #[test]
    fn the_pin_prompt_repeats_for_other_texts_and_a_new_pay_is_refused() {
        let mut h = Harness::new();
        h.claim(Some(eur(1250)), vec![AuthStep::Pin]);
        assert_eq!(
            replies(&h.text("what?")),
            vec!["Pay 12.50 EUR to Café Central? Reply with your PIN to pay, or NO to cancel."]
        );
        assert_eq!(
            replies(&h.text("PAY 987654321")),
            vec!["You have a payment waiting. Finish it, or reply NO to cancel it first."]
        );
        // BAL still works meanwhile.
        assert!(matches!(h.request("BAL"), CoreRequest::Balance { .. }));
    }

    #[test]
    fn cancel_by_the_payer() {
        let mut h = Harness::new();
        let (ticket, _) = h.claim(Some(eur(1250)), vec![AuthStep::Pin]);
        assert_eq!(
            h.request("no"),
            CoreRequest::Cancel {
                ticket: ticket.clone()
            }
        );
        assert_eq!(
            replies(&h.text("NO")),
            vec!["Your payment is being cancelled."]
        );
        let r = replies(&h.result(&ticket, CoreResult::Cancelled));
        assert_eq!(r, vec!["Payment cancelled. Nothing was paid."]);
        assert!(h.d.is_empty());
    }

    #[test]
    fn claim_failures_end_the_dialogue_with_a_reason() {
        let cases = [
            (CoreResult::InvalidNumber, "That number is not valid"),
            (CoreResult::InUse, "That number is already being paid"),
            (CoreResult::Blocked, "Payments from this phone are blocked"),
            (
                CoreResult::Declined {
                    reason: "insufficient funds".into(),
                },
                "Payment declined: insufficient funds.",
            ),
            (
                CoreResult::RefusedByPolicy {
                    reason: "no common authentication".into(),
                },
                "This payment cannot be made: no common",
            ),
            (CoreResult::Unavailable, "Sorry, the service is unavailable"),
            (CoreResult::Expired, "The payment request has expired"),
        ];
        for (result, start) in cases {
            let mut h = Harness::new();
            let CoreRequest::Claim { ticket, .. } = h.request("123456785") else {
                panic!()
            };
            let r = replies(&h.result(&ticket, result.clone()));
            assert!(r.len() == 1 && r[0].starts_with(start), "{result:?}: {r:?}");
            assert!(h.d.is_empty());
        }
    }

    #[test]
    fn a_voice_print_needs_a_call() {
        let mut h = Harness::new();
        let (ticket, actions) = h.claim(Some(eur(1250)), vec![AuthStep::VoicePrint, AuthStep::Pin]);
        assert_eq!(
            actions[0],
            Action::Core(CoreRequest::Release {
                ticket: ticket.clone()
            })
        );
        assert_eq!(
            replies(&actions),
            vec![
                "This payment needs a check that cannot be done by text. Please call +49 800 1234 and key the number 123456785."
            ]
        );
        assert!(h.d.is_empty());
        // The core may also say so itself, with its own number.
        let CoreRequest::Claim { ticket, .. } = h.request("123456785") else {
            panic!()
        };
        let r = replies(&h.result(
            &ticket,
            CoreResult::NeedsCall {
                number_to_call: "0800 55".into(),
            },
        ));
        assert_eq!(
            r,
            vec![
                "This payment needs a check that cannot be done by text. Please call 0800 55 and key the number 123456785."
            ]
        );
    }

    #[test]
    fn a_challenge_question_then_the_pin() {
        let mut h = Harness::new();
        let (ticket, actions) = h.claim(
            Some(eur(1250)),
            vec![
                AuthStep::Challenge {
                    question: "Your first school?".into(),
                },
                AuthStep::MerchantVisualCheck,
                AuthStep::Pin,
            ],
        );
        assert_eq!(
            replies(&actions),
            vec![
                "Pay 12.50 EUR to Café Central? Security question: Your first school? Reply with your answer, or NO to cancel."
            ]
        );
        let CoreRequest::SubmitAnswer { answer, .. } = h.request("  Hill Road Primary ") else {
            panic!()
        };
        assert_eq!(answer.expose(), "Hill Road Primary");
        let r = replies(&h.result(&ticket, CoreResult::AnswerWrong { tries_left: 2 }));
        assert_eq!(
            r,
            vec!["Wrong answer, 2 tries left. Reply with your answer to pay, or NO to cancel."]
        );
        h.request("Hill Road");
        let r = replies(&h.result(&ticket, CoreResult::StepAccepted));
        assert_eq!(r, vec!["Reply with your PIN to pay, or NO to cancel."]);
        h.request("4321");
        assert_eq!(
            h.result(&ticket, CoreResult::StepAccepted),
            vec![Action::Core(CoreRequest::Confirm {
                ticket: ticket.clone()
            })]
        );
    }

    #[test]
    fn no_payer_step_means_a_yes() {
        let mut h = Harness::new();
        let (ticket, actions) = h.claim(Some(eur(99)), vec![AuthStep::MerchantVisualCheck]);
        assert_eq!(
            replies(&actions),
            vec!["Pay 0.99 EUR to Café Central? Reply YES to pay, or NO to cancel."]
        );
        assert_eq!(h.request("yes"), CoreRequest::Confirm { ticket });
    }

    #[test]
    fn balance_and_history() {
        let mut h = Harness::new();
        let CoreRequest::Balance { ticket } = h.request("BAL") else {
            panic!()
        };
        let r = replies(&h.result(&ticket, CoreResult::Balance(eur(12_000))));
        assert_eq!(r, vec!["Your available amount is 120.00 EUR."]);
        let CoreRequest::History { ticket, n } = h.request("HIST") else {
            panic!()
        };
        assert_eq!(n, 3);
        let CoreRequest::History { n, .. } = h.request("hist 99") else {
            panic!()
        };
        assert_eq!(n, 5);
        let entries = vec![
            HistoryEntry {
                merchant_name: "Café Central".into(),
                amount: eur(1250),
                at: datetime!(2024-05-01 14:03 UTC),
            },
            HistoryEntry {
                merchant_name: "Kiosk".into(),
                amount: eur(300),
                at: datetime!(2024-04-30 09:00 UTC),
            },
        ];
        let r = replies(&h.result(&ticket, CoreResult::History(entries)));
        assert_eq!(
            r,
            vec!["Recent payments: 01.05. Café Central 12.50 EUR; 30.04. Kiosk 3.00 EUR"]
        );
        let r = replies(&h.result(&ticket, CoreResult::History(Vec::new())));
        assert_eq!(r, vec!["No recent payments."]);
        assert!(h.d.is_empty());
    }

    #[test]
    fn dialogues_expire_and_release_their_claim() {
        let mut h = Harness::new();
        let (ticket, _) = h.claim(Some(eur(1250)), vec![AuthStep::Pin]);
        assert_eq!(h.d.next_deadline(), Some(h.now + Duration::from_secs(300)));
        // A text refreshes the deadline.
        h.now += Duration::from_secs(200);
        h.text("what?");
        assert!(
            h.d.handle_timeout(h.now + Duration::from_secs(299))
                .is_empty()
        );
        let actions = h.d.handle_timeout(h.now + Duration::from_secs(300));
        assert_eq!(
            actions,
            vec![
                Action::Core(CoreRequest::Cancel {
                    ticket: ticket.clone()
                }),
                Action::Reply {
                    to: PAYER.into(),
                    text: "Your payment request has expired. Nothing was paid.".into()
                },
            ]
        );
        assert!(h.d.is_empty());
        // A late answer to the expired dialogue is ignored; a late claim is released.
        assert!(
            h.result(&ticket, CoreResult::PinWrong { tries_left: 1 })
                .is_empty()
        );
        assert_eq!(
            h.result(
                &ticket,
                CoreResult::Claimed {
                    merchant_name: "x".into(),
                    amount: None,
                    auth_steps: vec![]
                }
            ),
            vec![Action::Core(CoreRequest::Cancel { ticket })]
        );
    }

    #[test]
    fn a_settling_dialogue_expires_silently() {
        let mut h = Harness::new();
        let (ticket, _) = h.claim(Some(eur(1250)), vec![AuthStep::Pin]);
        h.request("4321");
        h.result(&ticket, CoreResult::StepAccepted);
        assert!(
            h.d.handle_timeout(h.now + Duration::from_secs(301))
                .is_empty()
        );
        assert!(h.d.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut h = Harness::new();
        h.d = Dialogues::new(DialogueConfig {
            dialogues_max: 2,
            ..DialogueConfig::default()
        });
        assert!(matches!(
            h.d.handle_text(h.now, "1", "PAY 123456785")[0],
            Action::Core(_)
        ));
        assert!(matches!(
            h.d.handle_text(h.now, "2", "PAY 123456785")[0],
            Action::Core(_)
        ));
        let r = replies(&h.d.handle_text(h.now, "3", "PAY 123456785"));
        assert_eq!(
            r,
            vec!["Sorry, too many payments right now. Please try again in a few minutes."]
        );
        assert_eq!(h.d.len(), 2);
        // Once the others expire there is room again.
        let later = h.now + Duration::from_secs(301);
        let actions = h.d.handle_text(later, "3", "PAY 123456785");
        assert!(matches!(
            actions.last(),
            Some(Action::Core(CoreRequest::Claim { .. }))
        ));
        assert_eq!(h.d.len(), 1);
    }

    #[test]
    fn replies_are_gsm_and_short() {
        use super::super::encoding::Alphabet;
        let mut h = Harness::new();
        let mut texts = replies(&h.text("help"));
        let (ticket, actions) = h.claim(Some(eur(123_456)), vec![AuthStep::Pin]);
        texts.extend(replies(&actions));
        h.request("4321");
        texts.extend(replies(
            &h.result(&ticket, CoreResult::PinWrong { tries_left: 2 }),
        ));
        for t in texts {
            assert_eq!(Alphabet::for_text(&t), Alphabet::Gsm7, "{t}");
            assert!(t.chars().count() <= 160, "{t}");
        }
    }
}
