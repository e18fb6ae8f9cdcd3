//! Administration commands: the registry and the ledger check, on a live database.

use crate::app::{AppError, Context};
use crate::settlement::Service;
use crate::settlement::auth_policy::{MerchantDemand, Method, PayerDemand};
use crate::settlement::credentials::{SecretDigits, random_token};
use crate::settlement::engine::{NewMerchant, NewPayer, Op};
use crate::settlement::model::{MerchantStatus, PayerStatus};
use crate::settlement::money::{Currency, Money, format_minor};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum MerchantCmd {
    /// Registers a merchant terminal; prints its API key (also its link credential).
    Add {
        #[arg(long)]
        terminal_id: String,
        #[arg(long)]
        merchant_id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "USD")]
        currency: String,
        /// The authentication method this terminal demands: challenge, pin, visual, voice.
        #[arg(long, default_value = "pin")]
        auth_method: String,
        /// The method may be neither dropped nor replaced (claims 22, 25).
        #[arg(long)]
        strict: bool,
        /// A payer attribute this merchant may see on pairing (repeatable).
        #[arg(long = "visible-attr")]
        visible_attrs: Vec<String>,
        #[arg(long)]
        webhook_url: Option<String>,
        #[arg(long)]
        webhook_secret: Option<String>,
        /// The API key; a random one is generated when absent.
        #[arg(long)]
        api_key: Option<String>,
        /// Share this settlement account (another terminal of the same merchant).
        #[arg(long)]
        account: Option<String>,
    },
    /// Lists merchant terminals.
    List,
    /// Suspends a terminal: it can open no transaction and no payer can pay it.
    Suspend { terminal_id: String },
    /// Makes a suspended terminal active again.
    Activate { terminal_id: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum PayerCmd {
    /// Registers a payer by MSISDN (E.164).
    Add {
        #[arg(long)]
        msisdn: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "USD")]
        currency: String,
        /// An attribute as NAME=VALUE (repeatable), e.g. age_over_18=true.
        #[arg(long = "attr")]
        attrs: Vec<String>,
        /// Credit line in major units, e.g. 50.00.
        #[arg(long)]
        credit_limit: Option<String>,
        /// Largest single payment in major units.
        #[arg(long)]
        limit: Option<String>,
        /// Preferred authentication method: challenge, pin, visual, voice.
        #[arg(long)]
        prefer: Option<String>,
        /// Refuse visual (portrait) checks.
        #[arg(long)]
        refuse_visual: bool,
        /// Always add a PIN to the agreed method.
        #[arg(long)]
        add_pin: bool,
    },
    /// Sets the PIN: from --pin, or else the first line of standard input.
    SetPin {
        msisdn: String,
        #[arg(long)]
        pin: Option<String>,
    },
    /// Adds a challenge question; the answer (digits) from --answer or standard input.
    AddQuestion {
        msisdn: String,
        #[arg(long)]
        question: String,
        #[arg(long)]
        answer: Option<String>,
    },
    /// Stores the payer's portrait (JPEG, PNG or WebP, at most 512 KiB).
    SetPortrait {
        msisdn: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Stores a voice-print template made by `telepay voice enrol` (payers can also enrol by
    /// phone: menu option 4, after their PIN).
    SetVoicePrint {
        msisdn: String,
        #[arg(long)]
        template: PathBuf,
    },
    /// Removes the payer's voice print.
    ClearVoicePrint {
        msisdn: String,
    },
    /// Pays money in: AMOUNT in major units, e.g. 100.00, in the payer's currency.
    Credit {
        msisdn: String,
        amount: String,
    },
    /// Lists payers with their balances.
    List,
    /// Unlocks a payer locked after wrong PINs (and resets the counter).
    Unlock {
        msisdn: String,
    },
    Suspend {
        msisdn: String,
    },
}

fn secret_from(arg: Option<String>, what: &str) -> Result<String, AppError> {
    match arg {
        Some(v) => Ok(v),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .take(256)
                .read_to_string(&mut s)
                .context(format!("reading the {what} from standard input"))?;
            Ok(s.lines().next().unwrap_or("").trim().to_string())
        }
    }
}

fn method(s: &str) -> Result<Method, AppError> {
    Method::parse(s).ok_or_else(|| AppError {
        context: format!("authentication method {s:?}"),
        message: "use challenge, pin, visual or voice".into(),
    })
}

fn money_arg(text: &str, currency: &str) -> Result<i64, AppError> {
    let cur = Currency::from_code(currency).ok_or_else(|| AppError {
        context: format!("currency {currency:?}"),
        message: "not an ISO 4217 code the gateway knows".into(),
    })?;
    Ok(Money::parse_major(text, cur)
        .context(format!("amount {text:?}"))?
        .amount_minor)
}

pub async fn merchant(svc: &Service, cmd: MerchantCmd) -> Result<(), AppError> {
    match cmd {
        MerchantCmd::Add {
            terminal_id,
            merchant_id,
            name,
            currency,
            auth_method,
            strict,
            visible_attrs,
            webhook_url,
            webhook_secret,
            api_key,
            account,
        } => {
            let api_key = match api_key {
                Some(k) => k,
                None => random_token().context("generating an API key")?,
            };
            svc.add_merchant(NewMerchant {
                terminal_id: terminal_id.clone(),
                merchant_id,
                name,
                currency: currency.to_ascii_uppercase(),
                api_key: api_key.clone(),
                demand: MerchantDemand {
                    method: method(&auth_method)?,
                    strict,
                },
                visible_attributes: visible_attrs,
                webhook_url,
                webhook_secret,
                account_id: account,
            })
            .await
            .context(format!("adding terminal {terminal_id}"))?;
            println!("terminal {terminal_id} added; API key: {api_key}");
        }
        MerchantCmd::List => {
            for m in svc.store().merchants().await.context("listing merchants")? {
                let bal = svc
                    .store()
                    .account(&m.account_id)
                    .await
                    .context("reading an account")?
                    .map(|a| match Currency::from_code(&a.currency) {
                        Some(c) => format!("{} {}", format_minor(a.balance_minor, c), a.currency),
                        None => format!("{} minor {}", a.balance_minor, a.currency),
                    })
                    .unwrap_or_default();
                println!(
                    "{}\t{}\t{}\t{}\t{}{}\t{}",
                    m.terminal_id,
                    m.merchant_id,
                    m.name,
                    m.status.as_str(),
                    m.demand.method,
                    if m.demand.strict { " (strict)" } else { "" },
                    bal
                );
            }
        }
        MerchantCmd::Suspend { terminal_id } => {
            svc.submit(Op::SetMerchantStatus {
                terminal_id: terminal_id.clone(),
                status: MerchantStatus::Suspended,
            })
            .await
            .context(format!("suspending {terminal_id}"))?;
            println!("terminal {terminal_id} suspended");
        }
        MerchantCmd::Activate { terminal_id } => {
            svc.submit(Op::SetMerchantStatus {
                terminal_id: terminal_id.clone(),
                status: MerchantStatus::Active,
            })
            .await
            .context(format!("activating {terminal_id}"))?;
            println!("terminal {terminal_id} active");
        }
    }
    Ok(())
}

pub async fn payer(svc: &Service, cmd: PayerCmd) -> Result<(), AppError> {
    match cmd {
        PayerCmd::Add {
            msisdn,
            name,
            currency,
            attrs,
            credit_limit,
            limit,
            prefer,
            refuse_visual,
            add_pin,
        } => {
            let currency = currency.to_ascii_uppercase();
            let mut attributes = BTreeMap::new();
            for a in attrs {
                let (k, v) = a.split_once('=').ok_or_else(|| AppError {
                    context: format!("attribute {a:?}"),
                    message: "write it as NAME=VALUE".into(),
                })?;
                attributes.insert(k.trim().to_string(), v.trim().to_string());
            }
            let credit_limit_minor = match credit_limit {
                Some(c) => money_arg(&c, &currency)?,
                None => 0,
            };
            let txn_limit_minor = match limit {
                Some(l) => Some(money_arg(&l, &currency)?),
                None => None,
            };
            let preferred = match prefer {
                Some(p) => Some(method(&p)?),
                None => None,
            };
            svc.add_payer(NewPayer {
                msisdn: msisdn.clone(),
                display_name: name,
                currency,
                attributes,
                credit_limit_minor,
                txn_limit_minor,
                demand: PayerDemand {
                    preferred,
                    refuses_visual: refuse_visual,
                    adds_pin: add_pin,
                },
            })
            .await
            .context(format!("adding payer {msisdn}"))?;
            println!("payer {msisdn} added");
        }
        PayerCmd::SetPin { msisdn, pin } => {
            let pin = SecretDigits::pin(&secret_from(pin, "PIN")?).context("the PIN")?;
            svc.submit(Op::SetPin {
                msisdn: msisdn.clone(),
                pin,
            })
            .await
            .context(format!("setting the PIN of {msisdn}"))?;
            println!("PIN of {msisdn} set");
        }
        PayerCmd::AddQuestion {
            msisdn,
            question,
            answer,
        } => {
            let answer =
                SecretDigits::answer(&secret_from(answer, "answer")?).context("the answer")?;
            svc.submit(Op::AddQuestion {
                msisdn: msisdn.clone(),
                question,
                answer,
            })
            .await
            .context(format!("adding a question for {msisdn}"))?;
            println!("question added for {msisdn}");
        }
        PayerCmd::SetPortrait { msisdn, file } => {
            let image = std::fs::read(&file).context(format!("reading {}", file.display()))?;
            let content_type = match image.get(..4) {
                Some([0xFF, 0xD8, 0xFF, _]) => "image/jpeg",
                Some([0x89, b'P', b'N', b'G']) => "image/png",
                Some(b"RIFF") => "image/webp",
                _ => {
                    return Err(AppError {
                        context: file.display().to_string(),
                        message: "not a JPEG, PNG or WebP image".into(),
                    });
                }
            };
            svc.submit(Op::SetPortrait {
                msisdn: msisdn.clone(),
                content_type: content_type.into(),
                image,
            })
            .await
            .context(format!("storing the portrait of {msisdn}"))?;
            println!("portrait of {msisdn} stored");
        }
        PayerCmd::SetVoicePrint { msisdn, template } => {
            let bytes =
                std::fs::read(&template).context(format!("reading {}", template.display()))?;
            // Only a template the verifier can read is stored.
            crate::voice::Template::from_bytes(&bytes).map_err(|e| AppError {
                context: template.display().to_string(),
                message: e.to_string(),
            })?;
            svc.set_voice_print(&msisdn, Some(bytes))
                .await
                .context(format!("storing the voice print of {msisdn}"))?;
            println!("voice print of {msisdn} stored");
        }
        PayerCmd::ClearVoicePrint { msisdn } => {
            svc.set_voice_print(&msisdn, None)
                .await
                .context(format!("removing the voice print of {msisdn}"))?;
            println!("voice print of {msisdn} removed");
        }
        PayerCmd::Credit { msisdn, amount } => {
            let p = svc
                .store()
                .payer(&msisdn)
                .await
                .context("reading the payer")?
                .ok_or_else(|| AppError {
                    context: msisdn.clone(),
                    message: "no such payer".into(),
                })?;
            let acct = svc
                .store()
                .account(&p.account_id)
                .await
                .context("reading the account")?
                .ok_or_else(|| AppError {
                    context: msisdn.clone(),
                    message: "the payer has no account".into(),
                })?;
            let minor = money_arg(&amount, &acct.currency)?;
            svc.submit(Op::Credit {
                msisdn: msisdn.clone(),
                amount_minor: minor,
            })
            .await
            .context(format!("crediting {msisdn}"))?;
            println!("credited {amount} {} to {msisdn}", acct.currency);
        }
        PayerCmd::List => {
            for p in svc.store().payers().await.context("listing payers")? {
                let a = svc
                    .store()
                    .account(&p.account_id)
                    .await
                    .context("reading an account")?;
                let bal = a
                    .map(|a| {
                        let cur = Currency::from_code(&a.currency);
                        match cur {
                            Some(c) => {
                                format!("{} {}", format_minor(a.balance_minor, c), a.currency)
                            }
                            None => format!("{} minor {}", a.balance_minor, a.currency),
                        }
                    })
                    .unwrap_or_default();
                println!(
                    "{}\t{}\t{}\t{}\tpin={}",
                    p.msisdn,
                    p.display_name,
                    p.status.as_str(),
                    bal,
                    if p.pin_hash.is_some() { "set" } else { "unset" }
                );
            }
        }
        PayerCmd::Unlock { msisdn } => {
            svc.submit(Op::SetPayerStatus {
                msisdn: msisdn.clone(),
                status: PayerStatus::Active,
            })
            .await
            .context(format!("unlocking {msisdn}"))?;
            println!("payer {msisdn} active");
        }
        PayerCmd::Suspend { msisdn } => {
            svc.submit(Op::SetPayerStatus {
                msisdn: msisdn.clone(),
                status: PayerStatus::Suspended,
            })
            .await
            .context(format!("suspending {msisdn}"))?;
            println!("payer {msisdn} suspended");
        }
    }
    Ok(())
}

/// `telepay check`: the ledger's invariants on the live database. Exit status 1 on violations.
pub async fn check(svc: &Service) -> Result<bool, AppError> {
    let rep = svc
        .store()
        .check_invariants()
        .await
        .context("checking the ledger")?;
    println!(
        "transactions={} settled={} transfers={}",
        rep.transactions, rep.settled, rep.transfers
    );
    for (c, s) in &rep.balance_sums {
        println!("balance_sum[{c}]={s}");
    }
    for v in &rep.violations {
        println!("VIOLATION: {v}");
    }
    println!(
        "{}",
        if rep.ok() {
            "ledger ok"
        } else {
            "ledger BROKEN"
        }
    );
    Ok(rep.ok())
}
