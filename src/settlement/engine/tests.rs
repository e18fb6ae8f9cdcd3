//! The engine without a database: rules that are hard to reach through a store, and the
//! ledger's invariants checked after every request of long random runs.

use super::*;
use crate::settlement::auth_policy::{MerchantDemand, PayerDemand};
use rand::{Rng, SeedableRng};

const NOW: i64 = 1_750_000_000_000;

fn ctx_parts() -> (Rules, ServerSecret) {
    (
        Rules::default(),
        ServerSecret::from_hex(&"cd".repeat(32)).unwrap(),
    )
}

/// A working set holding one merchant and `payers` payers with 100.00 each, as if loaded.
fn world(payers: usize) -> WorkingSet {
    let (rules, secret) = ctx_parts();
    let ctx = Ctx {
        rules: &rules,
        secret: &secret,
    };
    let mut ws = WorkingSet::new(NOW);
    apply(
        &mut ws,
        &ctx,
        Op::AddMerchant(NewMerchant {
            terminal_id: "TERM0001".into(),
            merchant_id: "MERCHANT0000001".into(),
            name: "Shop".into(),
            currency: "USD".into(),
            api_key: "key-0123456789".into(),
            demand: MerchantDemand {
                method: Method::Pin,
                strict: false,
            },
            visible_attributes: vec![],
            webhook_url: None,
            webhook_secret: None,
            account_id: None,
        }),
    )
    .unwrap();
    for i in 0..payers {
        let m = format!("+1555000{i:04}");
        apply(
            &mut ws,
            &ctx,
            Op::AddPayer(NewPayer {
                msisdn: m.clone(),
                display_name: "P".into(),
                currency: "USD".into(),
                attributes: BTreeMap::new(),
                credit_limit_minor: 0,
                txn_limit_minor: None,
                demand: PayerDemand::default(),
            }),
        )
        .unwrap();
        apply(
            &mut ws,
            &ctx,
            Op::SetPin {
                msisdn: m.clone(),
                pin: SecretDigits::pin("1234").unwrap(),
            },
        )
        .unwrap();
        apply(
            &mut ws,
            &ctx,
            Op::Credit {
                msisdn: m,
                amount_minor: 10_000,
            },
        )
        .unwrap();
    }
    ws
}

fn sum_is_zero(ws: &WorkingSet) -> bool {
    ws.accounts
        .values()
        .map(|a| a.balance_minor as i128)
        .sum::<i128>()
        == 0
}

fn open_op(amount: Option<i64>) -> Op {
    Op::Open {
        terminal_id: "TERM0001".into(),
        amount_minor: amount,
        currency: None,
        origin: Origin::Http,
        description: None,
        idempotency: None,
    }
}

#[test]
fn a_reserved_number_is_not_issued_again() {
    let (rules, secret) = ctx_parts();
    let ctx = Ctx {
        rules: &rules,
        secret: &secret,
    };
    let mut ws = world(0);
    // Candidates are taken from the end. The last one is still reserved (used within 24 h).
    ws.numbers
        .insert("111111118".into(), ("tx_old".into(), NOW + 1));
    ws.number_candidates = vec!["222222226".into(), "111111118".into()];
    let Reply::Txn { txn, .. } = apply(&mut ws, &ctx, open_op(None)).unwrap() else {
        panic!()
    };
    assert_eq!(txn.number, "222222226");
    // Its reservation runs to 24 h after the end of its claim window.
    assert_eq!(
        ws.numbers["222222226"].1,
        NOW + rules.number_ttl_ms + rules.number_reuse_after_ms
    );
    // A lapsed reservation may be reused.
    ws.numbers
        .insert("333333334".into(), ("tx_older".into(), NOW));
    ws.number_candidates = vec!["333333334".into()];
    let Reply::Txn { txn, .. } = apply(&mut ws, &ctx, open_op(None)).unwrap() else {
        panic!()
    };
    assert_eq!(txn.number, "333333334");
    // No candidate left: refused, nothing written.
    let before = ws.txns.len();
    assert_eq!(
        apply(&mut ws, &ctx, open_op(None)).unwrap_err(),
        OpError::NumberSpaceExhausted
    );
    assert_eq!(ws.txns.len(), before);
}

/// Long random runs of every payer and merchant request, in any order, with the invariants
/// checked after each: balances sum to zero, every settled transaction has exactly one
/// settlement transfer, and no failed request leaves a transfer behind.
#[test]
fn invariants_hold_after_every_request_of_random_runs() {
    let (rules, secret) = ctx_parts();
    let ctx = Ctx {
        rules: &rules,
        secret: &secret,
    };
    let (mut settled_total, mut reversed_total) = (0, 0);
    for seed in 0..20u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let payers: Vec<String> = (0..4).map(|i| format!("+1555000{i:04}")).collect();
        let mut ws = world(payers.len());
        let mut n = 0u64;
        for step in 0..400 {
            // In a fixed order (numbers are drawn from the seed) so a seed replays exactly.
            let mut ids: Vec<(String, String)> = ws
                .txns
                .values()
                .map(|t| (t.number.clone(), t.id.clone()))
                .collect();
            ids.sort();
            let ids: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();
            let pick = |rng: &mut rand::rngs::StdRng| -> String {
                if ids.is_empty() {
                    "tx_none".to_string()
                } else {
                    ids[rng.random_range(0..ids.len())].clone()
                }
            };
            let txn_id = pick(&mut rng);
            // Mostly the payer who claimed the transaction, sometimes anyone.
            let payer = match ws.txns.get(&txn_id).and_then(|t| t.payer_msisdn.clone()) {
                Some(p) if rng.random_bool(0.8) => p,
                _ => payers[rng.random_range(0..payers.len())].clone(),
            };
            let op = match rng.random_range(0..12) {
                0 | 1 => {
                    n += 1;
                    let num = format!("{:08}", 10_000_000 + n);
                    let c = crate::settlement::txn_number::damm_check_digit(&num).unwrap();
                    ws.number_candidates.push(format!("{num}{c}"));
                    open_op(rng.random_bool(0.5).then(|| rng.random_range(1..6_000)))
                }
                2 => {
                    let number = ws
                        .txns
                        .get(&txn_id)
                        .map(|t| t.number.clone())
                        .unwrap_or_default();
                    Op::Claim {
                        msisdn: payer,
                        number,
                        channel: PayerChannel::Call,
                    }
                }
                3 => Op::SetAmount {
                    terminal_id: "TERM0001".into(),
                    txn_id: txn_id.clone(),
                    amount_minor: rng.random_range(1..6_000),
                    currency: None,
                },
                4 | 5 => Op::SubmitPin {
                    msisdn: payer,
                    txn_id: txn_id.clone(),
                    pin: SecretDigits::pin(if rng.random_bool(0.95) {
                        "1234"
                    } else {
                        "9999"
                    })
                    .unwrap(),
                },
                6 | 7 => Op::Confirm {
                    msisdn: payer,
                    txn_id: txn_id.clone(),
                },
                8 => Op::Reverse {
                    terminal_id: "TERM0001".into(),
                    txn_id: txn_id.clone(),
                    cancel_if_open: rng.random_bool(0.5),
                },
                10 => Op::Credit {
                    msisdn: payer,
                    amount_minor: 5_000,
                },
                9 => Op::SetPayerStatus {
                    msisdn: payer,
                    status: crate::settlement::model::PayerStatus::Active,
                },
                _ => Op::PayerCancel {
                    msisdn: payer,
                    txn_id: txn_id.clone(),
                },
            };
            let transfers_before = ws.transfers.len();
            let result = apply(&mut ws, &ctx, op);
            if result.is_err() {
                assert_eq!(
                    ws.transfers.len(),
                    transfers_before,
                    "seed {seed} step {step}"
                );
            }
            assert!(sum_is_zero(&ws), "seed {seed} step {step}");
            for t in ws.txns.values() {
                let settlements = ws
                    .transfers
                    .iter()
                    .filter(|x| x.txn_id.as_deref() == Some(&t.id) && x.kind == "settlement")
                    .count();
                let reversals = ws
                    .transfers
                    .iter()
                    .filter(|x| x.txn_id.as_deref() == Some(&t.id) && x.kind == "reversal")
                    .count();
                let settled = matches!(t.state, TxnState::Settled | TxnState::Reversed);
                assert_eq!(settlements, usize::from(settled), "seed {seed} {t:?}");
                assert_eq!(reversals, usize::from(t.state == TxnState::Reversed));
            }
            // Payers never go below zero (no credit line here).
            for p in &payers {
                let a = &ws.accounts[&payer_account_id(p)];
                assert!(a.balance_minor >= 0, "seed {seed} step {step}");
            }
        }
        settled_total += ws
            .txns
            .values()
            .filter(|t| t.state == TxnState::Settled)
            .count();
        reversed_total += ws
            .txns
            .values()
            .filter(|t| t.state == TxnState::Reversed)
            .count();
    }
    // The runs reach the interesting states, so the checks above checked something.
    assert!(
        settled_total >= 20 && reversed_total >= 5,
        "{settled_total} {reversed_total}"
    );
}
