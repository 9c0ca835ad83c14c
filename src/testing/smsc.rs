//! A fake SMSC on loopback, built with the same crate as otpd's SMPP provider: binds
//! transceivers (checking the password), answers each `submit_sm` with a message id and a
//! delivery receipt, and can be told to throttle, answer an error, hold receipts back,
//! drop every bind, or answer nothing.

use futures_util::{SinkExt, StreamExt};
use rusmpp::command::CommandParts;
use rusmpp::pdus::{BindTransceiverResp, DeliverSm, SubmitSmResp};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, TlvValue};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessageState};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use crate::sync::LockUnpoisoned;

/// One `submit_sm` the fake took.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// `destination_addr`, as sent (no `+`).
    pub to: String,
    pub source: String,
    /// The sender's type of number and numbering plan.
    pub source_ton_npi: (u8, u8),
    /// The text, decoded by its data coding (GSM 7-bit unpacked as ASCII, UCS-2).
    pub text: String,
    pub data_coding: u8,
    /// The TLVs otpd's settings add (India's DLT ids), by tag.
    pub tlvs: Vec<(u16, Vec<u8>)>,
    pub message_id: String,
    pub received_at: Instant,
}

struct SmscState {
    /// Submits kept for `submitted`, at most (the oldest go first).
    cap: usize,
    /// Where every submit taken is also sent, uncapped, while someone subscribes.
    subscriber: Option<mpsc::Sender<Submitted>>,
    answer: Option<CommandStatus>,
    silent: bool,
    hold_receipts: bool,
    held: Vec<(mpsc::Sender<Command>, Command)>,
    submitted: VecDeque<Submitted>,
    seen: u64,
    receipt_answers: Vec<CommandStatus>,
    binds: u64,
    next_id: u64,
    next_sequence: u32,
}

impl Default for SmscState {
    fn default() -> Self {
        SmscState {
            cap: crate::testing::fakes::DEFAULT_RECORD_CAP,
            subscriber: None,
            answer: None,
            silent: false,
            hold_receipts: false,
            held: Vec::new(),
            submitted: VecDeque::new(),
            seen: 0,
            receipt_answers: Vec::new(),
            binds: 0,
            next_id: 0,
            next_sequence: 0,
        }
    }
}

/// How the fake SMSC answers, changeable while it runs.
#[derive(Clone)]
pub struct SmscControl {
    state: Arc<Mutex<SmscState>>,
    drop_binds: watch::Sender<u64>,
}

impl SmscControl {
    fn lock(&self) -> MutexGuard<'_, SmscState> {
        self.state.lock_unpoisoned()
    }

    /// Answers every `submit_sm` with `status` (e.g. `EsmeRthrottled`) while set; `None`
    /// takes them.
    pub fn answer_submits_with(&self, status: Option<CommandStatus>) {
        self.lock().answer = status;
    }

    /// Reads submits but answers none, while set.
    pub fn go_silent(&self, silent: bool) {
        self.lock().silent = silent;
    }

    /// Keeps receipts back while set; when cleared, sends the ones held.
    pub fn hold_receipts(&self, hold: bool) {
        let held = {
            let mut state = self.lock();
            state.hold_receipts = hold;
            if hold {
                Vec::new()
            } else {
                std::mem::take(&mut state.held)
            }
        };
        for (connection, receipt) in held {
            let _ = connection.try_send(receipt);
        }
    }

    /// Closes every bind now, as an SMSC that restarts.
    pub fn drop_binds(&self) {
        self.drop_binds.send_modify(|generation| *generation += 1);
    }

    /// The submits taken so far, oldest first.
    pub fn submitted(&self) -> Vec<Submitted> {
        self.lock().submitted.iter().cloned().collect()
    }

    /// Keeps at most `cap` submits for `submitted`. Default 10 000.
    pub fn set_record_cap(&self, cap: usize) {
        let mut state = self.lock();
        state.cap = cap;
        let excess = state.submitted.len().saturating_sub(cap);
        state.submitted.drain(..excess);
    }

    /// Streams every submit taken from now on, through a channel of `capacity`; a full
    /// channel holds the SMSC's answers back until the subscriber reads (back-pressure,
    /// never a dropped submit).
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<Submitted> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        self.lock().subscriber = Some(sender);
        receiver
    }

    /// How otpd answered each receipt, in order (`deliver_sm_resp`'s status).
    pub fn receipt_answers(&self) -> Vec<CommandStatus> {
        self.lock().receipt_answers.clone()
    }

    /// Submits read so far, answered or not.
    pub fn submits_seen(&self) -> u64 {
        self.lock().seen
    }

    /// Binds accepted so far.
    pub fn binds(&self) -> u64 {
        self.lock().binds
    }
}

/// The fake SMSC. Stops when dropped.
pub struct FakeSmsc {
    addr: SocketAddr,
    control: SmscControl,
    task: JoinHandle<()>,
}

impl FakeSmsc {
    /// Listens on 127.0.0.1 at a free port, binding `system_id` with `password`.
    pub async fn start(system_id: &str, password: &str) -> std::io::Result<FakeSmsc> {
        Self::start_with(system_id, password, None).await
    }

    /// `start`, every connection over TLS with `tls`.
    pub async fn start_tls(
        system_id: &str,
        password: &str,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<FakeSmsc> {
        Self::start_with(
            system_id,
            password,
            Some(tokio_rustls::TlsAcceptor::from(tls)),
        )
        .await
    }

    async fn start_with(
        system_id: &str,
        password: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<FakeSmsc> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let (drop_binds, _) = watch::channel(0);
        let control = SmscControl {
            state: Arc::default(),
            drop_binds,
        };
        let account = Arc::new((system_id.to_owned(), password.to_owned()));
        let served = control.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (control, account, tls) = (served.clone(), Arc::clone(&account), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(stream, control, &account).await,
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                serve(stream, control, &account).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(FakeSmsc {
            addr,
            control,
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn control(&self) -> &SmscControl {
        &self.control
    }
}

impl Drop for FakeSmsc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection until the client unbinds or leaves, or the binds are dropped.
async fn serve<S>(stream: S, control: SmscControl, account: &(String, String))
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sink, mut source) = Framed::new(stream, CommandCodec::new()).split::<Command>();
    let (outgoing, mut to_write) = mpsc::channel::<Command>(256);
    let writer = tokio::spawn(async move {
        while let Some(command) = to_write.recv().await {
            if sink.send(command).await.is_err() {
                break;
            }
        }
    });
    let mut dropped = control.drop_binds.subscribe();
    loop {
        let command = tokio::select! {
            next = source.next() => match next {
                Some(Ok(command)) => command,
                _ => break,
            },
            _ = dropped.changed() => break,
        };
        if !answer(command, &control, account, &outgoing).await {
            // The last answer (to an unbind, or a refused bind) goes out before the close.
            drop(outgoing);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer).await;
            return;
        }
    }
    writer.abort();
}

/// Answers one command; `false` ends the connection.
async fn answer(
    command: Command,
    control: &SmscControl,
    account: &(String, String),
    outgoing: &mpsc::Sender<Command>,
) -> bool {
    let sequence = command.sequence_number();
    let reply = |status, pdu: Pdu| Command::new(status, sequence, pdu);
    match command.pdu() {
        Some(Pdu::BindTransceiver(bind)) => {
            let known = bind.system_id.as_str() == account.0 && bind.password.as_str() == account.1;
            let status = if known {
                control.lock().binds += 1;
                CommandStatus::EsmeRok
            } else {
                CommandStatus::EsmeRinvpaswd
            };
            let resp = BindTransceiverResp::builder()
                .system_id(COctetString::from_str("FAKESMSC").expect("ASCII"))
                .build();
            let _ = outgoing.send(reply(status, resp.into())).await;
            known
        }
        Some(Pdu::SubmitSm(submit)) => {
            let (answer, silent) = {
                let mut state = control.lock();
                state.seen += 1;
                (state.answer, state.silent)
            };
            if silent {
                return true;
            }
            if let Some(status) = answer {
                // An error answer has no body, as SMSCs of SMPP 3.4 send it.
                let parts = CommandParts::new(CommandId::SubmitSmResp, status, sequence, None);
                let _ = outgoing.send(Command::from_parts(parts)).await;
                return true;
            }
            let taken = take(submit, control);
            let subscriber = control.lock().subscriber.clone();
            if let Some(subscriber) = subscriber {
                let _ = subscriber.send(taken.clone()).await;
            }
            let resp = SubmitSmResp::builder()
                .message_id(COctetString::from_str(&taken.message_id).expect("ASCII"))
                .build();
            let _ = outgoing
                .send(reply(CommandStatus::EsmeRok, resp.into()))
                .await;
            if u8::from(submit.registered_delivery) & 0x03 != 0 {
                let receipt = receipt_for(&taken, control);
                let held = {
                    let mut state = control.lock();
                    if state.hold_receipts {
                        state.held.push((outgoing.clone(), receipt.clone()));
                    }
                    state.hold_receipts
                };
                if !held {
                    let _ = outgoing.send(receipt).await;
                }
            }
            true
        }
        Some(Pdu::EnquireLink) => {
            let _ = outgoing
                .send(reply(CommandStatus::EsmeRok, Pdu::EnquireLinkResp))
                .await;
            true
        }
        _ if command.id() == CommandId::DeliverSmResp => {
            control.lock().receipt_answers.push(command.status());
            true
        }
        Some(Pdu::Unbind) => {
            let _ = outgoing
                .send(reply(CommandStatus::EsmeRok, Pdu::UnbindResp))
                .await;
            false
        }
        _ => true,
    }
}

/// Records `submit` under a new message id.
fn take(submit: &rusmpp::pdus::SubmitSm, control: &SmscControl) -> Submitted {
    let bytes: &[u8] = submit.short_message().as_ref();
    let data_coding = u8::from(submit.data_coding);
    let text = if submit.data_coding == DataCoding::Ucs2 {
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|pair| u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    };
    let tlvs = submit
        .tlvs()
        .iter()
        .filter_map(|tlv| match tlv.value() {
            Some(TlvValue::Other { tag, value }) => {
                Some((u16::from(*tag), value.as_ref().to_vec()))
            }
            _ => None,
        })
        .collect();
    let mut state = control.lock();
    state.next_id += 1;
    let taken = Submitted {
        to: submit.destination_addr.as_str().to_owned(),
        source: submit.source_addr.as_str().to_owned(),
        source_ton_npi: (
            u8::from(submit.source_addr_ton),
            u8::from(submit.source_addr_npi),
        ),
        text,
        data_coding,
        tlvs,
        message_id: format!("{:016X}", state.next_id),
        received_at: Instant::now(),
    };
    if state.cap > 0 {
        if state.submitted.len() >= state.cap {
            state.submitted.pop_front();
        }
        state.submitted.push_back(taken.clone());
    }
    taken
}

/// The delivery receipt of `taken`, in TLVs and in the text form.
fn receipt_for(taken: &Submitted, control: &SmscControl) -> Command {
    let text = format!(
        "id:{} sub:001 dlvrd:001 submit date:2612041300 done date:2612041300 stat:DELIVRD err:000 text:",
        taken.message_id
    );
    let receipt = DeliverSm::builder()
        .esm_class(EsmClass::from(0x04u8))
        .source_addr(COctetString::from_str(&taken.to).expect("ASCII"))
        .destination_addr(COctetString::from_str(&taken.source).expect("ASCII"))
        .short_message(OctetString::from_str(&text).expect("short"))
        .push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
            COctetString::from_str(&taken.message_id).expect("ASCII"),
        ))
        .push_tlv(MessageDeliveryRequestTlvValue::MessageState(
            MessageState::Delivered,
        ))
        .build();
    let mut state = control.lock();
    state.next_sequence += 1;
    Command::new(CommandStatus::EsmeRok, state.next_sequence, receipt)
}
