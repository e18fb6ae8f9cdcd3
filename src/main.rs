//! The `telepay` command: run the gateway, administer it, measure it.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use telepay::admin::{MerchantCmd, PayerCmd};
use telepay::app::{self, AppError};
use telepay::bench::settle::BenchBackend;
use telepay::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "telepay",
    version,
    about = "Telephony IVR and SMS settlement gateway"
)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "TELEPAY_CONFIG")]
    config: Option<PathBuf>,
    /// Where the SQLite file, the server secret and other state live (default ./data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// sqlite://FILE or postgres://… (default: the SQLite file in the data directory).
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs the gateway.
    Serve {
        /// Seeds a demo merchant and payer and enables the /sandbox/pay endpoint.
        #[arg(long)]
        demo: bool,
        /// HTTP merchant API address (default 127.0.0.1:8080).
        #[arg(long)]
        http: Option<String>,
        /// ISO 8583 merchant link address, or `off` (default 127.0.0.1:5800).
        #[arg(long)]
        merchant_link: Option<String>,
        /// SIP address for payer calls, UDP and TCP (e.g. 0.0.0.0:5060, or 0.0.0.0 for port 5060).
        #[arg(long)]
        sip: Option<String>,
        /// RTP port range for calls, LOW-HIGH (default: [sip] rtp_ports).
        #[arg(long)]
        rtp_ports: Option<String>,
    },
    /// Merchant terminals.
    #[command(subcommand)]
    Merchant(MerchantCmd),
    /// Payers.
    #[command(subcommand)]
    Payer(PayerCmd),
    /// Checks the ledger's invariants on the database; exit status 1 when broken.
    Check,
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Spoken digits and voice prints (8 kHz mono 16-bit WAV files).
    #[command(subcommand)]
    Voice(VoiceCmd),
    /// DTMF tools.
    #[command(subcommand)]
    Dtmf(DtmfCmd),
}

#[derive(Debug, Subcommand)]
enum DtmfCmd {
    /// Runs the in-band detector over recordings (8 kHz mono 16-bit WAV): FILE<TAB>DIGITS.
    Detect { files: Vec<PathBuf> },
}

#[derive(Debug, Subcommand)]
enum VoiceCmd {
    /// Recognizes spoken digits: a line per file, FILE<TAB>DIGITS<TAB>CONFIDENCE.
    Digits { files: Vec<PathBuf> },
    /// Enrols a speaker from utterances of digits into a template.
    Enrol {
        #[arg(long)]
        out: PathBuf,
        files: Vec<PathBuf>,
    },
    /// Scores utterances against a template: FILE<TAB>SCORE, higher is more alike.
    Score {
        #[arg(long)]
        template: PathBuf,
        files: Vec<PathBuf>,
    },
    /// Leave-one-speaker-out digit accuracy and voice-print EER on a folder named like FSDD.
    Eval { dir: PathBuf },
    /// Trains the shipped model from FSDD-style recordings into OUT_DIR/voice.bin.
    Train { fsdd_dir: PathBuf, out_dir: PathBuf },
}

/// Runs `f` on each file: its lines on standard output, a bad file's error on standard error;
/// the exit status says whether every file was read.
fn per_file<E: std::fmt::Display>(
    files: &[PathBuf],
    f: impl Fn(&PathBuf) -> Result<Vec<String>, E>,
) -> ExitCode {
    let mut ok = true;
    for file in files {
        match f(file) {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                ok = false;
                eprintln!("error: {e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn voice(cmd: VoiceCmd) -> Result<ExitCode, AppError> {
    use telepay::voice::{VoiceModel, cli};
    let err = |e: telepay::voice::VoiceError| AppError {
        context: "voice".into(),
        message: e.to_string(),
    };
    let mut log = |line: String| eprintln!("{line}");
    match cmd {
        VoiceCmd::Digits { files } => {
            let model = VoiceModel::embedded().map_err(err)?;
            return Ok(per_file(&files, |f| {
                cli::digits(&model, std::slice::from_ref(f))
            }));
        }
        VoiceCmd::Enrol { out, files } => {
            let model = VoiceModel::embedded().map_err(err)?;
            println!("{}", cli::enrol(&model, &out, &files).map_err(err)?);
        }
        VoiceCmd::Score { template, files } => {
            let model = VoiceModel::embedded().map_err(err)?;
            return Ok(per_file(&files, |f| {
                cli::score(&model, &template, std::slice::from_ref(f))
            }));
        }
        VoiceCmd::Eval { dir } => println!("{}", cli::eval(&dir, &mut log).map_err(err)?),
        VoiceCmd::Train { fsdd_dir, out_dir } => {
            println!(
                "{}",
                cli::train(&fsdd_dir, &out_dir, &mut log).map_err(err)?
            )
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Complete flows through the settlement core with durable commits.
    Settle {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: BenchBackend,
        #[arg(long, default_value_t = 20_000)]
        flows: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// Complete forward flows over the ISO 8583 merchant link on loopback.
    MerchantLink {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: BenchBackend,
        /// Terminals, each on its own connection, each running flows one after another.
        #[arg(long, default_value_t = 64)]
        terminals: usize,
        #[arg(long, default_value_t = 20_000)]
        flows: usize,
    },
    /// Round trips through the SMS channel over SMPP on loopback: MO `BAL` in, dialogue and
    /// core, MT reply out.
    Sms {
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Payers texting at once (each waits for its reply before texting again).
        #[arg(long, default_value_t = 64)]
        payers: usize,
        /// The SMPP window of outstanding submit_sm.
        #[arg(long, default_value_t = 50)]
        window: usize,
        /// What the payers text: `bal` (one round trip, a read) or `pay` (PAY then PIN: two
        /// round trips, a settled payment and its receipt).
        #[arg(long, value_enum, default_value = "bal")]
        text: telepay::bench::sms::BenchText,
    },
    /// Concurrent payer calls on loopback: prompts out, in-band digits in.
    Calls {
        #[arg(long, default_value_t = 100)]
        calls: usize,
        /// How long every call is held with audio flowing.
        #[arg(long, default_value_t = 20)]
        hold_s: u64,
        /// Each call keys a digit this often.
        #[arg(long, default_value_t = 3000)]
        digit_period_ms: u64,
        #[arg(long, default_value = "dialplan")]
        dialplan: PathBuf,
        #[arg(long, default_value = "prompts/en")]
        prompts: PathBuf,
    },
    /// Speech on one thread: collectors (end-pointing, recognition), check-digit search and
    /// text-prompted voice-print checks on answers built from FSDD-style recordings; prints the
    /// real-time factor.
    Voice {
        /// Folder of `{digit}_{speaker}_{index}.wav` recordings.
        #[arg(long, default_value = "../shared/data/fsdd")]
        fsdd: PathBuf,
        /// Answers of each kind (4-digit voice-print answers, 9-digit numbers).
        #[arg(long, default_value_t = 100)]
        answers: usize,
    },
}

fn config(cli: &Cli) -> Result<Config, AppError> {
    let mut cfg = Config::load(cli.config.as_deref()).map_err(|e| AppError {
        context: "configuration".into(),
        message: e.to_string(),
    })?;
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(u) = &cli.database_url {
        cfg.database_url = Some(u.clone());
    }
    if let Cmd::Serve { http: Some(h), .. } = &cli.cmd {
        cfg.http.listen = h.clone();
    }
    if let Cmd::Serve {
        merchant_link: Some(l),
        ..
    } = &cli.cmd
    {
        cfg.merchant_link.listen = l.clone();
    }
    if let Cmd::Serve { sip, rtp_ports, .. } = &cli.cmd {
        if let Some(s) = sip {
            cfg.sip.listen = Some(s.clone());
        }
        if let Some(r) = rtp_ports {
            cfg.sip.rtp_ports = r.clone();
        }
    }
    cfg.validate().map_err(|e| AppError {
        context: "configuration".into(),
        message: e.to_string(),
    })?;
    Ok(cfg)
}

async fn run(cli: Cli) -> Result<ExitCode, AppError> {
    if let Cmd::Voice(v) = cli.cmd {
        // Pure computation on files: no configuration, database or runtime needed.
        return tokio::task::spawn_blocking(move || voice(v))
            .await
            .map_err(|e| AppError {
                context: "voice".into(),
                message: e.to_string(),
            })?;
    }
    if let Cmd::Dtmf(DtmfCmd::Detect { files }) = &cli.cmd {
        return Ok(per_file(files, |f| {
            telepay::telephony::dtmf::detect_file(f)
                .map(|digits| vec![format!("{}\t{digits}", f.display())])
                .map_err(|e| format!("{}: {e}", f.display()))
        }));
    }
    let cfg = config(&cli)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let quiet = !matches!(cli.cmd, Cmd::Serve { .. }) && std::env::var_os("TELEPAY_LOG").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(if quiet {
            tracing_subscriber::EnvFilter::new("warn")
        } else {
            filter
        })
        .with_writer(std::io::stderr)
        .init();
    match cli.cmd {
        Cmd::Serve { demo, .. } => app::serve(cfg, demo).await.map(|_| ExitCode::SUCCESS),
        Cmd::Merchant(c) => {
            let svc = app::open_service(&cfg).await?;
            telepay::admin::merchant(&svc, c).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Payer(c) => {
            let svc = app::open_service(&cfg).await?;
            telepay::admin::payer(&svc, c).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check => {
            let svc = app::open_service(&cfg).await?;
            Ok(if telepay::admin::check(&svc).await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Voice(_) => Ok(ExitCode::SUCCESS),
        Cmd::Dtmf(_) => Ok(ExitCode::SUCCESS),
        Cmd::Bench(BenchCmd::Settle {
            backend,
            flows,
            concurrency,
        }) => {
            let f = telepay::bench::settle::run(backend, flows, concurrency).await?;
            println!(
                "backend={backend:?} flows={} concurrency={concurrency} elapsed_s={:.2} batches={} requests_per_batch={:.1} batch_ms={:.2}",
                f.flows, f.elapsed_s, f.batches, f.batch_requests_mean, f.batch_ms_mean
            );
            println!(
                "flows_per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
                f.flows_per_s, f.p50_ms, f.p99_ms
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench(BenchCmd::MerchantLink {
            backend,
            terminals,
            flows,
        }) => {
            let f = telepay::bench::merchant_link::run(backend, terminals, flows).await?;
            println!(
                "backend={backend:?} flows={} terminals={} elapsed_s={:.2} advices_acked={}",
                f.flows, f.terminals, f.elapsed_s, f.advices_acked
            );
            println!(
                "flows_per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
                f.flows_per_s, f.p50_ms, f.p99_ms
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench(BenchCmd::Sms {
            messages,
            payers,
            window,
            text,
        }) => {
            let f = telepay::bench::sms::run(messages, payers, window, text).await?;
            println!(
                "text={text:?} messages={} payers={} window={window} elapsed_s={:.2} p50_ms={:.2}",
                f.messages, f.payers, f.elapsed_s, f.p50_ms
            );
            println!(
                "round_trips_per_s={:.0} p99_ms={:.2}",
                f.round_trips_per_s, f.p99_ms
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench(BenchCmd::Voice { fsdd, answers }) => {
            let f = telepay::bench::voice::run(&telepay::bench::voice::VoiceBench {
                fsdd_dir: fsdd,
                answers,
            })
            .map_err(|e| AppError {
                context: "bench voice".into(),
                message: e.to_string(),
            })?;
            println!(
                "answers={} audio_s={:.1} cpu_s={:.2} numbers_heard={} template_bytes={}",
                f.answers, f.audio_s, f.cpu_s, f.numbers_heard, f.template_bytes
            );
            println!(
                "rtf={:.4} sessions_per_core={:.0}",
                f.rtf, f.sessions_per_core
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench(BenchCmd::Calls {
            calls,
            hold_s,
            digit_period_ms,
            dialplan,
            prompts,
        }) => {
            let f = telepay::bench::calls::run(telepay::bench::calls::CallsBench {
                calls,
                hold_s,
                digit_period_ms,
                dialplan_dir: dialplan,
                prompts_dir: prompts,
            })
            .await?;
            println!(
                "calls_up={} digits_sent={} packets_sent={} jitter_p50_ms={:.2}",
                f.calls_up, f.digits_sent, f.packets_sent, f.jitter_p50_ms
            );
            println!(
                "calls={} lost_digits={} cpu_per_call_pct={:.3} jitter_p99_ms={:.2} cps={:.0}",
                f.calls, f.lost_digits, f.cpu_per_call_pct, f.jitter_p99_ms, f.cps
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
