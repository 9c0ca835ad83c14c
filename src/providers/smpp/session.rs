//! One SMPP bind: a connection to the SMSC that a writer and a reader task serve. Requests
//! are matched to their responses by sequence number; the SMSC's `enquire_link` is answered
//! and ours is sent every `enquire_link` period (an unanswered one ends the bind); each
//! `deliver_sm` is handed to `on_deliver`, and answered once that has taken it.

use futures_util::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiver, DeliverSm, DeliverSmResp};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use crate::sync::LockUnpoisoned;

/// What a bind needs to know.
pub struct Credentials<'a> {
    pub system_id: &'a str,
    pub password: &'a str,
    pub system_type: &'a str,
}

/// Takes one `deliver_sm`; the returned future resolves once it is taken (recorded), and
/// only then is the SMSC answered: `false` asks it to deliver again later.
pub type OnDeliver =
    Arc<dyn Fn(DeliverSm) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

/// Why a request got no response.
#[derive(Debug)]
pub enum Lost {
    /// It never left: the bind was already down.
    NotSent(String),
    /// It went out and no response came in time, or the bind ended first: the SMSC may have
    /// taken it.
    NoAnswer(String),
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Command>>>>;

/// A bound session. Dropping it ends the connection.
pub struct Session {
    outgoing: mpsc::Sender<Command>,
    pending: Pending,
    sequence: Arc<AtomicU32>,
    open: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Commands waiting to be written, at most.
const OUTGOING: usize = 256;

impl Session {
    /// Binds as a transceiver over `stream` within `timeout`, then keeps the bind alive.
    pub async fn bind<S>(
        stream: S,
        credentials: Credentials<'_>,
        timeout: Duration,
        enquire_every: Duration,
        on_deliver: OnDeliver,
    ) -> Result<Session, String>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut sink, mut source) = Framed::new(stream, CommandCodec::new()).split::<Command>();
        let (outgoing, mut to_write) = mpsc::channel::<Command>(OUTGOING);
        let pending: Pending = Arc::default();
        let open = Arc::new(AtomicBool::new(true));
        let writer = {
            let open = Arc::clone(&open);
            tokio::spawn(async move {
                while let Some(command) = to_write.recv().await {
                    if sink.send(command).await.is_err() {
                        break;
                    }
                }
                open.store(false, Ordering::SeqCst);
            })
        };
        let reader = {
            let (pending, open, outgoing) =
                (Arc::clone(&pending), Arc::clone(&open), outgoing.clone());
            tokio::spawn(async move {
                while let Some(Ok(command)) = source.next().await {
                    if !answer(command, &pending, &outgoing, &on_deliver).await {
                        break;
                    }
                }
                open.store(false, Ordering::SeqCst);
                // Every request still waiting learns the bind is gone.
                pending.lock_unpoisoned().clear();
            })
        };
        let mut session = Session {
            outgoing,
            pending,
            sequence: Arc::default(),
            open,
            tasks: vec![writer, reader],
        };
        let bind = BindTransceiver::builder()
            .system_id(c_octets(credentials.system_id, "system_id")?)
            .password(c_octets(credentials.password, "password")?)
            .system_type(c_octets(credentials.system_type, "system_type")?)
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        let answer = session
            .request(bind, timeout)
            .await
            .map_err(|lost| match lost {
                Lost::NotSent(why) | Lost::NoAnswer(why) => why,
            })?;
        if answer.status() != CommandStatus::EsmeRok {
            return Err(format!(
                "the SMSC refused the bind: {}",
                status_name(answer.status())
            ));
        }
        session
            .tasks
            .push(session.keep_alive(enquire_every, timeout));
        Ok(session)
    }

    /// Whether the bind still stands.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Counts the bind as gone: the next send makes a new one (and dropping this session
    /// closes its connection).
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// Sends `pdu` and waits up to `timeout` for its response.
    pub async fn request(&self, pdu: impl Into<Pdu>, timeout: Duration) -> Result<Command, Lost> {
        request(
            &self.outgoing,
            &self.pending,
            &self.sequence,
            pdu.into(),
            timeout,
        )
        .await
    }

    /// Sends `enquire_link` every `every`; one unanswered within `timeout` ends the bind.
    fn keep_alive(&self, every: Duration, timeout: Duration) -> JoinHandle<()> {
        let (outgoing, pending, open) = (
            self.outgoing.clone(),
            Arc::clone(&self.pending),
            Arc::clone(&self.open),
        );
        let sequence = Arc::clone(&self.sequence);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let asked =
                    request(&outgoing, &pending, &sequence, Pdu::EnquireLink, timeout).await;
                if !asked.is_ok_and(|answer| answer.status() == CommandStatus::EsmeRok) {
                    open.store(false, Ordering::SeqCst);
                    return;
                }
            }
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn request(
    outgoing: &mpsc::Sender<Command>,
    pending: &Pending,
    sequence: &AtomicU32,
    pdu: Pdu,
    timeout: Duration,
) -> Result<Command, Lost> {
    let number = (sequence.fetch_add(1, Ordering::SeqCst) % 0x7FFF_FFFE) + 1;
    let (answered, mut answer) = oneshot::channel();
    pending.lock_unpoisoned().insert(number, answered);
    // The request takes its entry away on every way out, a cancelled send's too.
    let _forget = Forget(pending, number);
    let deadline = tokio::time::Instant::now() + timeout;
    let queued = tokio::time::timeout_at(
        deadline,
        outgoing.send(Command::new(CommandStatus::EsmeRok, number, pdu)),
    )
    .await;
    match queued {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(Lost::NotSent("the bind is down".into())),
        Err(_) => {
            return Err(Lost::NotSent(
                "the bind is stalled: nothing is written".into(),
            ))
        }
    }
    match tokio::time::timeout_at(deadline, &mut answer).await {
        Ok(Ok(command)) => Ok(command),
        Ok(Err(_)) => Err(Lost::NoAnswer(
            "the bind ended before the SMSC answered".into(),
        )),
        Err(_) => {
            pending.lock_unpoisoned().remove(&number);
            // An answer that came as the time ran out still counts.
            answer.try_recv().map_err(|_| {
                Lost::NoAnswer(format!(
                    "the SMSC did not answer within {} ms",
                    timeout.as_millis()
                ))
            })
        }
    }
}

/// Takes a request's entry out of the pending map when the request ends.
struct Forget<'a>(&'a Pending, u32);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.lock_unpoisoned().remove(&self.1);
    }
}

/// Handles one command from the SMSC; `false` when the bind is over.
async fn answer(
    command: Command,
    pending: &Pending,
    outgoing: &mpsc::Sender<Command>,
    on_deliver: &OnDeliver,
) -> bool {
    let number = command.sequence_number();
    let id = command.id();
    if id.is_response() {
        let waiting = pending.lock_unpoisoned().remove(&number);
        if let Some(waiting) = waiting {
            let _ = waiting.send(command);
        }
        return true;
    }
    let reply = move |status, pdu: Pdu| Command::new(status, number, pdu);
    match (id, command.pdu()) {
        (CommandId::EnquireLink, _) => {
            let _ = outgoing
                .send(reply(CommandStatus::EsmeRok, Pdu::EnquireLinkResp))
                .await;
            true
        }
        (CommandId::DeliverSm, Some(Pdu::DeliverSm(delivered))) => {
            let taken = on_deliver(delivered.clone());
            let outgoing = outgoing.clone();
            // Answered once taken, so a receipt the SMSC counts as delivered is kept.
            tokio::spawn(async move {
                let status = if taken.await {
                    CommandStatus::EsmeRok
                } else {
                    // A temporary application error: the SMSC delivers it again.
                    CommandStatus::EsmeRxTAppn
                };
                let _ = outgoing
                    .send(reply(status, DeliverSmResp::default().into()))
                    .await;
            });
            true
        }
        (CommandId::Unbind, _) => {
            let _ = outgoing
                .send(reply(CommandStatus::EsmeRok, Pdu::UnbindResp))
                .await;
            false
        }
        _ => {
            let _ = outgoing
                .send(reply(CommandStatus::EsmeRinvcmdid, Pdu::GenericNack))
                .await;
            true
        }
    }
}

fn c_octets<const MIN: usize, const MAX: usize>(
    value: &str,
    setting: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    COctetString::from_str(value)
        .map_err(|_| format!("{setting} must be ASCII of at most {} characters", MAX - 1))
}

/// A command status as SMPP names it, with its code: `ESME_RTHROTTLED (0x58)`.
pub fn status_name(status: CommandStatus) -> String {
    let name = format!("{status:?}");
    let spelled = match name.strip_prefix("EsmeR") {
        Some(rest) => format!("ESME_R{}", rest.to_ascii_uppercase()),
        None => name,
    };
    format!("{spelled} (0x{:02X})", u32::from(status))
}
