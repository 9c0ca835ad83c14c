//! What every provider kind gives the registry: the channels it serves, its settings'
//! checks, how to build its adapter, and how to read its delivery receipts.

use secrecy::SecretString;
use std::path::PathBuf;
use std::sync::Arc;

use super::receipts::{ReceiptInbox, ReceiptReader};
use super::Provider;
use crate::domain::Channel;

/// Why a provider could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the provider settings have {} problem(s): {}", .0.len(), .0.join("; "))]
    Invalid(Vec<String>),
    #[error("could not set up the provider's client: {0}")]
    Client(String),
}

/// What building a provider may need besides its own settings.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The store directory (the sandbox writes its outbox there).
    pub store_dir: PathBuf,
    /// `receipt_secrets.<id>`: the shared secret its delivery receipts carry.
    pub receipt_secret: Option<SecretString>,
    /// Where receipts that arrive on the provider's own connection go (SMPP).
    pub receipt_inbox: Option<ReceiptInbox>,
}

/// Implemented by each kind's settings type (`TwilioConfig`, …).
pub trait ProviderKind {
    /// The channels providers of this kind deliver.
    fn channels(&self) -> Vec<Channel>;

    /// Every problem with these settings, each naming its setting under `prefix`
    /// (`providers.<id>`).
    fn validate(&self, prefix: &str) -> Vec<String>;

    /// Builds the adapter of provider `id`.
    fn build(&self, id: &str, context: &BuildContext) -> Result<Arc<dyn Provider>, BuildError>;

    /// How the provider's delivery receipts are read, when it posts them to otpd.
    fn receipts(&self, _context: &BuildContext) -> Option<Arc<dyn ReceiptReader>> {
        None
    }
}
