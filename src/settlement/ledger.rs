//! The ledger: balanced double-entry transfers, validated before anything is written.
//!
//! After TigerBeetle's `create_transfer`: `validate` runs a fixed order of checks and returns the
//! first that fails, changing nothing; `apply` then moves the money and cannot fail. Balances
//! are what each account holder owns (positive = money held); the system funding account of a
//! currency goes negative by exactly what was paid in, so per currency all balances sum to zero.

use serde::{Deserialize, Serialize};

/// Who holds an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Payer,
    Merchant,
    /// The counterpart of money paid into the system (one per currency).
    Funding,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Payer => "payer",
            AccountKind::Merchant => "merchant",
            AccountKind::Funding => "funding",
        }
    }
    pub fn parse(s: &str) -> Option<AccountKind> {
        match s {
            "payer" => Some(AccountKind::Payer),
            "merchant" => Some(AccountKind::Merchant),
            "funding" => Some(AccountKind::Funding),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub kind: AccountKind,
    pub currency: String,
    pub balance_minor: i64,
    /// How far below zero the balance may go (payers' credit line).
    pub credit_limit_minor: i64,
    /// Funding and merchant accounts may go below zero without limit: funding by design, and a
    /// merchant when a reversal takes back more than it holds.
    pub overdraft_unlimited: bool,
}

impl Account {
    /// What the holder may spend: balance plus credit line.
    pub fn available_minor(&self) -> i64 {
        self.balance_minor.saturating_add(self.credit_limit_minor)
    }
}

/// Why a transfer was refused, in precedence order: the first failing check is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    #[error("the amount must be greater than zero")]
    AmountNotPositive,
    #[error("the debit and credit accounts are the same")]
    SameAccount,
    #[error("the debit account's currency differs from the transfer's")]
    DebitCurrencyMismatch,
    #[error("the credit account's currency differs from the transfer's")]
    CreditCurrencyMismatch,
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("the debit balance would overflow")]
    DebitOverflow,
    #[error("the credit balance would overflow")]
    CreditOverflow,
}

/// Checks a transfer of `amount_minor` in `currency` from `debit` to `credit`.
pub fn validate(
    debit: &Account,
    credit: &Account,
    amount_minor: i64,
    currency: &str,
) -> Result<(), TransferError> {
    if amount_minor <= 0 {
        return Err(TransferError::AmountNotPositive);
    }
    if debit.id == credit.id {
        return Err(TransferError::SameAccount);
    }
    if debit.currency != currency {
        return Err(TransferError::DebitCurrencyMismatch);
    }
    if credit.currency != currency {
        return Err(TransferError::CreditCurrencyMismatch);
    }
    if !debit.overdraft_unlimited && amount_minor > debit.available_minor() {
        return Err(TransferError::InsufficientFunds);
    }
    debit
        .balance_minor
        .checked_sub(amount_minor)
        .ok_or(TransferError::DebitOverflow)?;
    credit
        .balance_minor
        .checked_add(amount_minor)
        .ok_or(TransferError::CreditOverflow)?;
    Ok(())
}

/// Moves the money; call only after `validate` passed for the same arguments.
pub fn apply(debit: &mut Account, credit: &mut Account, amount_minor: i64) {
    debug_assert!(amount_minor > 0);
    let before = debit.balance_minor as i128 + credit.balance_minor as i128;
    debit.balance_minor -= amount_minor;
    credit.balance_minor += amount_minor;
    // Double entry: the pair's sum is unchanged.
    debug_assert_eq!(
        before,
        debit.balance_minor as i128 + credit.balance_minor as i128
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(id: &str, kind: AccountKind, balance: i64, credit: i64) -> Account {
        Account {
            id: id.into(),
            kind,
            currency: "USD".into(),
            balance_minor: balance,
            credit_limit_minor: credit,
            overdraft_unlimited: kind != AccountKind::Payer,
        }
    }

    /// Each row breaks the checks from one point on, so the table also shows precedence.
    #[test]
    fn checks_in_precedence_order() {
        let payer = acct("p", AccountKind::Payer, 1_000, 500);
        let merchant = acct("m", AccountKind::Merchant, 0, 0);
        let mut eur_merchant = merchant.clone();
        eur_merchant.currency = "EUR".into();
        let mut eur_payer = payer.clone();
        eur_payer.currency = "EUR".into();
        let mut full = merchant.clone();
        full.balance_minor = i64::MAX;
        let mut deep = acct("f", AccountKind::Funding, i64::MIN + 5, 0);
        deep.overdraft_unlimited = true;
        type Case<'a> = (
            &'a Account,
            &'a Account,
            i64,
            &'a str,
            Result<(), TransferError>,
        );
        let cases: Vec<Case> = vec![
            (
                &payer,
                &payer,
                0,
                "USD",
                Err(TransferError::AmountNotPositive),
            ),
            (&payer, &payer, 10, "USD", Err(TransferError::SameAccount)),
            (
                &eur_payer,
                &eur_merchant,
                10,
                "USD",
                Err(TransferError::DebitCurrencyMismatch),
            ),
            (
                &payer,
                &eur_merchant,
                10,
                "USD",
                Err(TransferError::CreditCurrencyMismatch),
            ),
            (
                &payer,
                &merchant,
                1_501,
                "USD",
                Err(TransferError::InsufficientFunds),
            ),
            (
                &deep,
                &merchant,
                10,
                "USD",
                Err(TransferError::DebitOverflow),
            ),
            (&payer, &full, 10, "USD", Err(TransferError::CreditOverflow)),
            (&payer, &merchant, 1_500, "USD", Ok(())),
        ];
        for (i, (d, c, amount, cur, want)) in cases.into_iter().enumerate() {
            assert_eq!(validate(d, c, amount, cur), want, "case {i}");
        }
    }

    #[test]
    fn apply_keeps_the_sum() {
        let mut p = acct("p", AccountKind::Payer, 1_000, 0);
        let mut m = acct("m", AccountKind::Merchant, 0, 0);
        validate(&p, &m, 400, "USD").unwrap();
        apply(&mut p, &mut m, 400);
        assert_eq!((p.balance_minor, m.balance_minor), (600, 400));
    }
}
