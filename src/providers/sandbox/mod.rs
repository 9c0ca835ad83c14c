//! The sandbox, the stand-in phone for every channel: writes each message to
//! `<store dir>/sandbox/outbox.jsonl`; its receipts are otpd's own format behind a tenant key.

mod adapter;

use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::Channel;
use crate::providers::http::{GenericAuth, GenericReceipts};
use crate::providers::kind::{BuildContext, BuildError, ProviderKind};
use crate::providers::receipts::ReceiptReader;
use crate::providers::Provider;
pub use adapter::SandboxProvider;

/// Settings of a sandbox provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Milliseconds to wait before writing each message. Default 0.
    #[serde(default)]
    pub delay_ms: u64,
}

impl ProviderKind for SandboxConfig {
    fn channels(&self) -> Vec<Channel> {
        Channel::all().collect()
    }

    fn validate(&self, _: &str) -> Vec<String> {
        Vec::new()
    }

    fn build(&self, id: &str, context: &BuildContext) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(SandboxProvider::new(
            id,
            &context.store_dir,
            Duration::from_millis(self.delay_ms),
        )))
    }

    fn receipts(&self, _: &BuildContext) -> Option<Arc<dyn ReceiptReader>> {
        Some(Arc::new(GenericReceipts {
            auth: GenericAuth::TenantKey,
        }))
    }
}
