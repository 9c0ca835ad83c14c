//! A provider for tests: records every message and answers as it is told.

use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Mutex;

use super::{OutboundMessage, Provider, ProviderError, SendReceipt};

#[derive(Default)]
pub struct StubProvider {
    sent: Mutex<Vec<OutboundMessage>>,
    /// Answers to give, in order; when empty, every send succeeds.
    scripted: Mutex<VecDeque<Result<SendReceipt, ProviderError>>>,
}

impl StubProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues the answer for a coming send.
    pub fn answer_next(&self, answer: Result<SendReceipt, ProviderError>) {
        self.scripted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(answer);
    }

    /// Every message given to `send`, failed ones included.
    pub fn sent(&self) -> Vec<OutboundMessage> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl Provider for StubProvider {
    fn id(&self) -> &str {
        "stub"
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message.clone());
        self.scripted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or(Ok(SendReceipt {
                provider_message_id: None,
            }))
    }
}
