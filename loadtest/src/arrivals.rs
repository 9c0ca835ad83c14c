//! Where the harness sees messages reach the provider: the fake provider's stream, the fake
//! SMSC's, or the sandbox outbox file tailed from disk. Both become one channel of `Arrival`s.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use otpd::testing::{RecordedMessage, Submitted, WireFormat};

/// How often the outbox file is read for new lines.
const TAIL_POLL: Duration = Duration::from_millis(2);
/// Arrivals buffered between the source and the harness.
const CAPACITY: usize = 65_536;

/// One message as it reached the provider.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub to: String,
    /// The text the person would read (code included).
    pub text: String,
    pub at: Instant,
}

fn text_of(message: &RecordedMessage) -> String {
    if message.format == WireFormat::Generic {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&message.body) {
            if let Some(text) = value.get("text").and_then(|t| t.as_str()) {
                return text.to_owned();
            }
        }
    }
    message.body.clone()
}

/// Arrivals at the fake provider.
pub fn from_fake(mut messages: mpsc::Receiver<RecordedMessage>) -> mpsc::Receiver<Arrival> {
    let (sender, receiver) = mpsc::channel(CAPACITY);
    tokio::spawn(async move {
        while let Some(message) = messages.recv().await {
            let arrival = Arrival {
                to: message.to.clone(),
                text: text_of(&message),
                at: message.received_at,
            };
            if sender.send(arrival).await.is_err() {
                return;
            }
        }
    });
    receiver
}

/// Arrivals at the fake SMSC (numbers as SMPP carries them, without `+`).
pub fn from_smsc(mut submits: mpsc::Receiver<Submitted>) -> mpsc::Receiver<Arrival> {
    let (sender, receiver) = mpsc::channel(CAPACITY);
    tokio::spawn(async move {
        while let Some(submit) = submits.recv().await {
            let arrival = Arrival {
                to: format!("+{}", submit.to),
                text: submit.text,
                at: submit.received_at,
            };
            if sender.send(arrival).await.is_err() {
                return;
            }
        }
    });
    receiver
}

/// Arrivals in the sandbox outbox (one JSON line per message), timed when read: up to
/// `TAIL_POLL` late.
pub fn from_outbox(path: PathBuf) -> mpsc::Receiver<Arrival> {
    let (sender, receiver) = mpsc::channel(CAPACITY);
    tokio::spawn(async move {
        let file = loop {
            match tokio::fs::File::open(&path).await {
                Ok(file) => break file,
                Err(_) if !sender.is_closed() => tokio::time::sleep(TAIL_POLL).await,
                Err(_) => return,
            }
        };
        let mut reader = BufReader::new(file);
        let mut pending = String::new();
        loop {
            match reader.read_line(&mut pending).await {
                Ok(0) => {
                    if sender.is_closed() {
                        return;
                    }
                    tokio::time::sleep(TAIL_POLL).await;
                }
                Ok(_) if pending.ends_with('\n') => {
                    let at = Instant::now();
                    let line = std::mem::take(&mut pending);
                    let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    let field = |name: &str| {
                        value
                            .get(name)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let arrival = Arrival {
                        to: field("to"),
                        text: field("body"),
                        at,
                    };
                    if sender.send(arrival).await.is_err() {
                        return;
                    }
                }
                // A half-written line: keep it and read the rest later.
                Ok(_) => tokio::time::sleep(TAIL_POLL).await,
                Err(_) => return,
            }
        }
    });
    receiver
}

/// The code in a message text: the one run of `length` digits.
pub fn code_in(text: &str, length: usize) -> Option<String> {
    let mut runs = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == length);
    let code = runs.next()?;
    runs.all(|other| other == code).then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_code_in_a_message() {
        assert_eq!(
            code_in("123456 ist Ihr Anmeldecode. Er läuft in 5 Minuten ab.", 6),
            Some("123456".into())
        );
        assert_eq!(code_in("no code", 6), None);
        assert_eq!(code_in("123456 or 654321", 6), None);
    }

    #[tokio::test]
    async fn tails_the_outbox_including_lines_written_in_halves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        let mut arrivals = from_outbox(path.clone());
        std::fs::write(&path, "{\"to\": \"+4915100000001\", \"body\": \"111111 is").unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(file, " it\"}}").unwrap();
        writeln!(file, "{{\"to\": \"+4915100000002\", \"body\": \"222222\"}}").unwrap();
        let first = arrivals.recv().await.unwrap();
        let second = arrivals.recv().await.unwrap();
        assert_eq!(first.to, "+4915100000001");
        assert_eq!(first.text, "111111 is it");
        assert_eq!(second.to, "+4915100000002");
    }
}
