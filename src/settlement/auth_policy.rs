//! The authentication policy: which method authenticates the payer in one transaction.
//!
//! A pure function of the merchant's demand, the payer's demand and what the payer has enrolled
//! (claims 20–26). Every merchant terminal stores the method it demands and whether it requires
//! it strictly; every payer stores the method they prefer, whether they refuse visual checks, and
//! whether they want a PIN on top of whatever else is agreed.
//!
//! ## Methods and their accuracy (claim 21)
//!
//! From least to most accurate:
//!
//! 1. `challenge` — an answer to one registered question, picked at random (claims 17–19).
//!    Answers are facts that people close to the payer may know.
//! 2. `pin` — a secret only the payer knows, with a shared attempt limit (claim 16).
//! 3. `visual` — the merchant compares the payer in front of it with the registered facial
//!    portrait (claims 14–15, 35); it needs a person at the terminal.
//! 4. `voice` — a text-prompted voice print (claims 23, 43): the payer speaks digits the gateway
//!    chooses, so both the voice and the liveness are checked.
//!
//! ## The rules, in the order they apply
//!
//! - The payer refuses visual checks and the merchant demands one strictly: refuse (claim 25).
//! - The payer refuses visual checks and the merchant demands one but not strictly: the merchant's
//!   demand drops out and a method without a visual check is agreed (claim 24).
//! - The merchant demands its method strictly and the payer demands a different one: the demands
//!   do not match, refuse (claim 22).
//! - Otherwise the more accurate of the two demands is agreed (claim 21); a payer without a
//!   preference accepts the merchant's method.
//! - The agreed method must be one the payer has enrolled; if not, no agreement is possible and
//!   the payer is told why (claim 22).
//! - A payer who asks for a PIN on top gets it added to the agreed method (claim 26).

use serde::{Deserialize, Serialize};
use std::fmt;

/// An authentication method of the catalogue, ordered by accuracy (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Challenge,
    Pin,
    Visual,
    Voice,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::Challenge,
        Method::Pin,
        Method::Visual,
        Method::Voice,
    ];

    /// Rank in the accuracy order: higher is more accurate.
    pub fn accuracy(self) -> u8 {
        match self {
            Method::Challenge => 1,
            Method::Pin => 2,
            Method::Visual => 3,
            Method::Voice => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Challenge => "challenge",
            Method::Pin => "pin",
            Method::Visual => "visual",
            Method::Voice => "voice",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// What people call it, for prompts and texts.
    pub fn spoken(self) -> &'static str {
        match self {
            Method::Challenge => "a security question",
            Method::Pin => "your PIN",
            Method::Visual => "a photo check by the merchant",
            Method::Voice => "your voice",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a merchant terminal demands (stored with the terminal, claim 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantDemand {
    pub method: Method,
    /// The method may be neither dropped nor replaced ("essentially requires", claim 25).
    pub strict: bool,
}

/// What a payer demands (stored with the payer, claim 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PayerDemand {
    pub preferred: Option<Method>,
    pub refuses_visual: bool,
    pub adds_pin: bool,
}

/// What the payer has enrolled; a method cannot be agreed without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enrolment {
    pub has_pin: bool,
    /// Registered challenge questions; at least two are needed for a random pick to mean much.
    pub questions: usize,
    pub has_portrait: bool,
    pub has_voice_print: bool,
}

/// The fewest registered questions for `challenge` to be agreed.
pub const CHALLENGE_QUESTIONS_MIN: usize = 2;

impl Enrolment {
    pub fn has(&self, method: Method) -> bool {
        match method {
            Method::Challenge => self.questions >= CHALLENGE_QUESTIONS_MIN,
            Method::Pin => self.has_pin,
            Method::Visual => self.has_portrait,
            Method::Voice => self.has_voice_print,
        }
    }
}

/// The outcome of a successful negotiation: the steps to run, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// The method agreed between the two demands.
    pub method: Method,
    /// Steps in the order the channel runs them; `method` first, an added PIN last.
    pub steps: Vec<Method>,
}

/// Why no method could be agreed. Each has a stable code and a sentence a channel can speak or
/// text to the payer (claims 22, 25).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    #[error("this merchant requires a photo check, which you have chosen to refuse")]
    VisualRequiredButRefused,
    #[error("this merchant accepts only {merchant}, but you have asked for {payer}")]
    MethodMismatch { merchant: Method, payer: Method },
    #[error("this payment needs {method}, which you have not set up")]
    MethodNotEnrolled { method: Method },
}

impl Refusal {
    /// A stable machine-readable code for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::VisualRequiredButRefused => "visual_required_but_refused",
            Refusal::MethodMismatch { .. } => "method_mismatch",
            Refusal::MethodNotEnrolled { .. } => "method_not_enrolled",
        }
    }

    /// The sentence for the payer, in plain words.
    pub fn explain(&self) -> String {
        match self {
            Refusal::VisualRequiredButRefused => {
                "This merchant requires a photo check, which you have chosen to refuse, so the payment cannot go ahead.".into()
            }
            Refusal::MethodMismatch { merchant, payer } => format!(
                "This merchant accepts only {}, but you have asked for {}, so the payment cannot go ahead.",
                merchant.spoken(),
                payer.spoken()
            ),
            Refusal::MethodNotEnrolled { method } => format!(
                "This payment needs {}, which you have not set up.",
                method.spoken()
            ),
        }
    }
}

/// Agrees the authentication for one transaction (claims 20–26; rules in the module docs).
pub fn agree(
    merchant: MerchantDemand,
    payer: PayerDemand,
    enrolled: Enrolment,
) -> Result<Agreement, Refusal> {
    // A payer who refuses visual checks cannot also prefer one; such a record means "no visual".
    let payer_preferred = payer
        .preferred
        .filter(|m| !(payer.refuses_visual && *m == Method::Visual));

    let method = if payer.refuses_visual && merchant.method == Method::Visual {
        if merchant.strict {
            return Err(Refusal::VisualRequiredButRefused); // claim 25
        }
        // Claim 24: the merchant's demand drops out; the payer's own demand, or a PIN, stands.
        payer_preferred.unwrap_or(Method::Pin)
    } else {
        match payer_preferred {
            Some(p) if merchant.strict && p != merchant.method => {
                return Err(Refusal::MethodMismatch {
                    merchant: merchant.method,
                    payer: p,
                }); // claim 22
            }
            // Claim 21: the more accurate of the two.
            Some(p) => p.max(merchant.method),
            None => merchant.method,
        }
    };

    if !enrolled.has(method) {
        return Err(Refusal::MethodNotEnrolled { method }); // claim 22: no agreement possible
    }
    let mut steps = vec![method];
    if payer.adds_pin && method != Method::Pin {
        if !enrolled.has(Method::Pin) {
            return Err(Refusal::MethodNotEnrolled {
                method: Method::Pin,
            });
        }
        steps.push(Method::Pin); // claim 26
    }
    Ok(Agreement { method, steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything() -> Enrolment {
        Enrolment {
            has_pin: true,
            questions: 3,
            has_portrait: true,
            has_voice_print: true,
        }
    }

    fn merchant(method: Method, strict: bool) -> MerchantDemand {
        MerchantDemand { method, strict }
    }

    #[test]
    fn claim_20_each_side_stores_a_demand_and_an_agreed_method_is_selected() {
        // Both sides demand the same method: it is agreed as is.
        let a = agree(
            merchant(Method::Pin, false),
            PayerDemand {
                preferred: Some(Method::Pin),
                ..Default::default()
            },
            everything(),
        )
        .unwrap();
        assert_eq!(a.method, Method::Pin);
        assert_eq!(a.steps, vec![Method::Pin]);
        // A payer without a preference accepts the merchant's demand.
        let a = agree(
            merchant(Method::Challenge, false),
            PayerDemand::default(),
            everything(),
        )
        .unwrap();
        assert_eq!(a.steps, vec![Method::Challenge]);
    }

    #[test]
    fn claim_21_the_more_accurate_demand_wins() {
        for m in Method::ALL {
            for p in Method::ALL {
                let a = agree(
                    merchant(m, false),
                    PayerDemand {
                        preferred: Some(p),
                        ..Default::default()
                    },
                    everything(),
                )
                .unwrap();
                let expected = if m.accuracy() >= p.accuracy() { m } else { p };
                assert_eq!(a.method, expected, "merchant {m}, payer {p}");
            }
        }
    }

    #[test]
    fn claim_22_demands_that_do_not_match_are_refused_and_the_payer_told_why() {
        // The merchant accepts only a PIN; the payer demands a voice print.
        let r = agree(
            merchant(Method::Pin, true),
            PayerDemand {
                preferred: Some(Method::Voice),
                ..Default::default()
            },
            everything(),
        )
        .unwrap_err();
        assert_eq!(
            r,
            Refusal::MethodMismatch {
                merchant: Method::Pin,
                payer: Method::Voice
            }
        );
        assert!(r.explain().contains("accepts only your PIN"));
        // No agreement is possible either when the agreed method is not enrolled.
        let r = agree(
            merchant(Method::Voice, false),
            PayerDemand::default(),
            Enrolment {
                has_voice_print: false,
                ..everything()
            },
        )
        .unwrap_err();
        assert_eq!(
            r,
            Refusal::MethodNotEnrolled {
                method: Method::Voice
            }
        );
        assert_eq!(r.code(), "method_not_enrolled");
    }

    #[test]
    fn claim_23_methods_are_visual_password_and_voice_among_others() {
        for m in [Method::Visual, Method::Pin, Method::Voice] {
            assert_eq!(Method::parse(m.as_str()), Some(m));
            let a = agree(merchant(m, true), PayerDemand::default(), everything()).unwrap();
            assert_eq!(a.steps, vec![m]);
        }
    }

    #[test]
    fn claim_24_visual_refused_and_not_strictly_required_gives_a_method_without_it() {
        let a = agree(
            merchant(Method::Visual, false),
            PayerDemand {
                refuses_visual: true,
                ..Default::default()
            },
            everything(),
        )
        .unwrap();
        assert!(!a.steps.contains(&Method::Visual));
        assert_eq!(a.method, Method::Pin);
        // The payer's own preference stands when the merchant's visual demand drops out.
        let a = agree(
            merchant(Method::Visual, false),
            PayerDemand {
                preferred: Some(Method::Challenge),
                refuses_visual: true,
                adds_pin: false,
            },
            everything(),
        )
        .unwrap();
        assert_eq!(a.steps, vec![Method::Challenge]);
    }

    #[test]
    fn claim_25_visual_refused_but_strictly_required_is_refused_with_the_reason() {
        let r = agree(
            merchant(Method::Visual, true),
            PayerDemand {
                refuses_visual: true,
                ..Default::default()
            },
            everything(),
        )
        .unwrap_err();
        assert_eq!(r, Refusal::VisualRequiredButRefused);
        assert!(r.explain().contains("requires a photo check"));
    }

    #[test]
    fn claim_26_payer_adds_a_pin_to_the_merchants_method() {
        let a = agree(
            merchant(Method::Visual, false),
            PayerDemand {
                adds_pin: true,
                ..Default::default()
            },
            everything(),
        )
        .unwrap();
        assert_eq!(a.steps, vec![Method::Visual, Method::Pin]);
        // A PIN already agreed is not asked twice.
        let a = agree(
            merchant(Method::Pin, false),
            PayerDemand {
                adds_pin: true,
                ..Default::default()
            },
            everything(),
        )
        .unwrap();
        assert_eq!(a.steps, vec![Method::Pin]);
    }
}
