//! The sandbox provider, the stand-in phone: appends each message as one JSON line to
//! `<store dir>/sandbox/outbox.jsonl`.

use async_trait::async_trait;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};

pub struct SandboxProvider {
    id: String,
    path: PathBuf,
    file: Mutex<Option<tokio::fs::File>>,
    delay: Duration,
}

#[derive(Serialize)]
struct OutboxLine<'a> {
    verification_id: &'a str,
    to: &'a str,
    channel: &'a str,
    body: &'a str,
}

impl SandboxProvider {
    /// Provider `id`, writing to `<store_dir>/sandbox/outbox.jsonl` after waiting `delay`
    /// per message.
    pub fn new(id: &str, store_dir: &Path, delay: Duration) -> Self {
        SandboxProvider {
            id: id.to_owned(),
            path: store_dir.join("sandbox").join("outbox.jsonl"),
            file: Mutex::new(None),
            delay,
        }
    }

    pub fn outbox_path(&self) -> &Path {
        &self.path
    }

    async fn open(&self) -> std::io::Result<tokio::fs::File> {
        if let Some(parent) = self.path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // The outbox holds codes in clear (it stands in for phones): only otpd's user reads it.
        tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .await
    }
}

#[async_trait]
impl Provider for SandboxProvider {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut line = serde_json::to_vec(&OutboxLine {
            verification_id: message.verification_id.as_str(),
            to: &message.to,
            channel: message.channel.as_str(),
            body: &message.body,
        })
        .map_err(|error| ProviderError::Permanent {
            reason: format!("could not encode the message: {error}"),
        })?;
        line.push(b'\n');
        let transient = |error: std::io::Error| ProviderError::Transient {
            reason: format!("could not write {}: {error}", self.path.display()),
            retry_after: None,
        };
        let mut file = self.file.lock().await;
        if file.is_none() {
            *file = Some(self.open().await.map_err(transient)?);
        }
        let handle = file.as_mut().expect("opened above");
        let written = async {
            handle.write_all(&line).await?;
            handle.flush().await
        }
        .await;
        if let Err(error) = written {
            *file = None;
            return Err(transient(error));
        }
        Ok(SendReceipt {
            provider_message_id: Some(message.job_id.to_string()),
        })
    }
}
