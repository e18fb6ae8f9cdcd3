//! A merchant terminal on the link, as the gateway's tests and benchmarks play it: one request
//! at a time, advices queued as they arrive (and acknowledged at once when `auto_ack` is set),
//! the gateway's echoes answered. Integrators' terminals are their own; this one speaks the
//! profile of `docs/merchant-link.md` through the same typed messages as the gateway.

use crate::merchant::iso8583::message::{
    Advice, AdviceResponse, AmountRequest, AmountResponse, NetworkCode, NetworkRequest,
    NetworkResponse, OpenRequest, OpenResponse, ProcessingCode, ReversalRequest, ReversalResponse,
    TransmissionTime, mtis,
};
use crate::merchant::iso8583::{
    Amount, FRAME_SIZE_MAX, FrameReader, MerchantId, Message, OriginalData, ProfileMessage,
    ResponseCode, Secret, Stan, TerminalId, TxnRef,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TerminalError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the gateway closed the link")]
    Closed,
    #[error("unreadable message from the gateway: {0}")]
    Codec(String),
    #[error("unexpected message from the gateway: {0}")]
    Unexpected(String),
    #[error("bad test input: {0}")]
    Input(&'static str),
}

type Result<T> = std::result::Result<T, TerminalError>;

/// Any byte stream (TCP, or TLS over TCP).
pub trait Link: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Link for T {}

pub struct Terminal {
    link: Box<dyn Link>,
    reader: FrameReader,
    buf: Vec<u8>,
    pub terminal_id: TerminalId,
    pub merchant_id: MerchantId,
    stan: Stan,
    /// Advices received and not yet taken with [`Terminal::advice`].
    pub advices: VecDeque<Advice>,
    /// Acknowledge every advice as it arrives.
    pub auto_ack: bool,
    /// How long to wait for any one answer.
    pub timeout: Duration,
}

fn now_time() -> TransmissionTime {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    TransmissionTime::from_unix_seconds(s)
}

impl Terminal {
    pub async fn connect(addr: SocketAddr, terminal_id: &str, merchant_id: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Terminal::over(Box::new(stream), terminal_id, merchant_id)
    }

    /// A terminal over an established link (e.g. TLS).
    pub fn over(link: Box<dyn Link>, terminal_id: &str, merchant_id: &str) -> Result<Self> {
        Ok(Terminal {
            link,
            reader: FrameReader::new(FRAME_SIZE_MAX),
            buf: vec![0; 8192],
            terminal_id: TerminalId::new(terminal_id).ok_or(TerminalError::Input("terminal id"))?,
            merchant_id: MerchantId::new(merchant_id).ok_or(TerminalError::Input("merchant id"))?,
            stan: Stan::ZERO,
            advices: VecDeque::new(),
            auto_ack: false,
            timeout: Duration::from_secs(30),
        })
    }

    pub fn next_stan(&mut self) -> Stan {
        self.stan = self.stan.next();
        self.stan
    }

    /// Continues the STAN sequence after `stan` (a terminal that restarted).
    pub fn set_stan(&mut self, stan: Stan) {
        self.stan = stan;
    }

    pub async fn send(&mut self, m: &ProfileMessage) -> Result<()> {
        let frame = m
            .to_message()
            .and_then(|m| {
                m.encode_frame(FRAME_SIZE_MAX)
                    .map_err(crate::merchant::iso8583::ProfileError::from)
            })
            .map_err(|e| TerminalError::Codec(e.to_string()))?;
        self.send_raw(&frame).await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.link.write_all(bytes).await?;
        Ok(())
    }

    /// The next message from the gateway, whatever it is.
    pub async fn read_message(&mut self) -> Result<Message> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.read_message_inner())
            .await
            .map_err(|_| TerminalError::Timeout(timeout))?
    }

    async fn read_message_inner(&mut self) -> Result<Message> {
        loop {
            match self.reader.next_frame() {
                Ok(Some(frame)) => {
                    return Message::decode(frame).map_err(|e| TerminalError::Codec(e.to_string()));
                }
                Ok(None) => {}
                Err(e) => return Err(TerminalError::Codec(e.to_string())),
            }
            let n = self.link.read(&mut self.buf).await?;
            if n == 0 {
                return Err(TerminalError::Closed);
            }
            self.reader.push(&self.buf[..n]);
        }
    }

    /// The next message that is not an advice or a gateway echo (those are queued or answered).
    pub async fn response(&mut self) -> Result<ProfileMessage> {
        loop {
            let m = self.read_message().await?;
            let pm = ProfileMessage::from_message(&m)
                .map_err(|e| TerminalError::Codec(format!("{} {e}", m.mti())))?;
            match pm {
                ProfileMessage::Advice(a) => self.queue_advice(a).await?,
                ProfileMessage::NetworkRequest(r) => self.answer_network(&r).await?,
                other => return Ok(other),
            }
        }
    }

    async fn queue_advice(&mut self, a: Advice) -> Result<()> {
        if self.auto_ack {
            self.ack(&a).await?;
        }
        self.advices.push_back(a);
        Ok(())
    }

    async fn answer_network(&mut self, r: &NetworkRequest) -> Result<()> {
        let answer = NetworkResponse::answering(r, ResponseCode::Approved, now_time());
        self.send(&ProfileMessage::NetworkResponse(answer)).await
    }

    /// The next advice (queued, or read from the link).
    pub async fn advice(&mut self) -> Result<Advice> {
        loop {
            if let Some(a) = self.advices.pop_front() {
                return Ok(a);
            }
            let m = self.read_message().await?;
            match ProfileMessage::from_message(&m)
                .map_err(|e| TerminalError::Codec(format!("{} {e}", m.mti())))?
            {
                ProfileMessage::Advice(a) => self.queue_advice(a).await?,
                ProfileMessage::NetworkRequest(r) => self.answer_network(&r).await?,
                other => return Err(TerminalError::Unexpected(format!("{other:?}"))),
            }
        }
    }

    pub async fn ack(&mut self, a: &Advice) -> Result<()> {
        let answer = AdviceResponse {
            stan: a.stan,
            transmitted: Some(now_time()),
            txn_ref: Some(a.body.txn_ref.clone()),
            response: ResponseCode::Approved,
            terminal_id: Some(self.terminal_id.clone()),
            merchant_id: Some(self.merchant_id.clone()),
        };
        self.send(&ProfileMessage::AdviceResponse(answer)).await
    }

    pub fn network_request(&mut self, code: NetworkCode, key: Option<&str>) -> NetworkRequest {
        NetworkRequest {
            stan: self.next_stan(),
            transmitted: Some(now_time()),
            code,
            terminal_id: Some(self.terminal_id.clone()),
            merchant_id: Some(self.merchant_id.clone()),
            key: key.map(Secret::new),
        }
    }

    pub async fn network(&mut self, request: NetworkRequest) -> Result<NetworkResponse> {
        self.send(&ProfileMessage::NetworkRequest(request)).await?;
        match self.response().await? {
            ProfileMessage::NetworkResponse(r) => Ok(r),
            other => Err(TerminalError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn sign_on(&mut self, key: &str) -> Result<ResponseCode> {
        let r = self.network_request(NetworkCode::SignOn, Some(key));
        Ok(self.network(r).await?.response)
    }

    pub async fn sign_off(&mut self) -> Result<ResponseCode> {
        let r = self.network_request(NetworkCode::SignOff, None);
        Ok(self.network(r).await?.response)
    }

    pub fn open_request(&mut self, amount: Option<Amount>) -> OpenRequest {
        OpenRequest {
            repeat: false,
            stan: self.next_stan(),
            transmitted: Some(now_time()),
            processing: ProcessingCode::purchase(),
            amount,
            terminal_id: self.terminal_id.clone(),
            merchant_id: self.merchant_id.clone(),
        }
    }

    pub async fn open_with(&mut self, request: OpenRequest) -> Result<OpenResponse> {
        self.send(&ProfileMessage::OpenRequest(request)).await?;
        match self.response().await? {
            ProfileMessage::OpenResponse(r) => Ok(r),
            other => Err(TerminalError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn open(&mut self, amount: Option<Amount>) -> Result<OpenResponse> {
        let r = self.open_request(amount);
        self.open_with(r).await
    }

    pub fn amount_request(&mut self, txn_ref: &TxnRef, amount: Amount) -> AmountRequest {
        AmountRequest {
            repeat: false,
            stan: self.next_stan(),
            transmitted: Some(now_time()),
            processing: ProcessingCode::purchase(),
            amount,
            txn_ref: txn_ref.clone(),
            terminal_id: self.terminal_id.clone(),
            merchant_id: self.merchant_id.clone(),
        }
    }

    pub async fn amount_with(&mut self, request: AmountRequest) -> Result<AmountResponse> {
        self.send(&ProfileMessage::AmountRequest(request)).await?;
        match self.response().await? {
            ProfileMessage::AmountResponse(r) => Ok(r),
            other => Err(TerminalError::Unexpected(format!("{other:?}"))),
        }
    }

    pub async fn amount(&mut self, txn_ref: &TxnRef, amount: Amount) -> Result<AmountResponse> {
        let r = self.amount_request(txn_ref, amount);
        self.amount_with(r).await
    }

    pub fn reversal_request(&mut self, txn_ref: &TxnRef, original_stan: Stan) -> ReversalRequest {
        ReversalRequest {
            repeat: false,
            stan: self.next_stan(),
            transmitted: Some(now_time()),
            txn_ref: txn_ref.clone(),
            terminal_id: self.terminal_id.clone(),
            merchant_id: self.merchant_id.clone(),
            original: OriginalData::new(mtis::AMOUNT_REQUEST, original_stan, None),
        }
    }

    pub async fn reverse_with(&mut self, request: ReversalRequest) -> Result<ReversalResponse> {
        self.send(&ProfileMessage::ReversalRequest(request)).await?;
        match self.response().await? {
            ProfileMessage::ReversalResponse(r) => Ok(r),
            other => Err(TerminalError::Unexpected(format!("{other:?}"))),
        }
    }
}
