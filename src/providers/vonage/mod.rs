//! Vonage: SMS through the SMS API (`vonage`), calls that read the code through the Voice
//! API (`vonage_voice`); receipts and call events with a shared secret.

mod adapter;
pub mod receipts;
mod voice;

use std::sync::Arc;

use crate::domain::Channel;
use crate::providers::kind::{BuildContext, BuildError, ProviderKind};
use crate::providers::receipts::ReceiptReader;
use crate::providers::Provider;
pub use adapter::{VonageConfig, VonageProvider};
pub use receipts::VonageReceipts;
pub use voice::{VonageVoiceConfig, VonageVoiceProvider, DEFAULT_VOICE_BASE_URL};

impl ProviderKind for VonageConfig {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Sms]
    }

    fn validate(&self, prefix: &str) -> Vec<String> {
        VonageConfig::validate(self, prefix)
    }

    fn build(&self, id: &str, _: &BuildContext) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(VonageProvider::new(id, self.clone())?))
    }

    fn receipts(&self, context: &BuildContext) -> Option<Arc<dyn ReceiptReader>> {
        Some(Arc::new(VonageReceipts {
            secret: context.receipt_secret.clone(),
        }))
    }
}

impl ProviderKind for VonageVoiceConfig {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Voice]
    }

    fn validate(&self, prefix: &str) -> Vec<String> {
        VonageVoiceConfig::validate(self, prefix)
    }

    fn build(&self, id: &str, _: &BuildContext) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(VonageVoiceProvider::new(id, self.clone())?))
    }

    fn receipts(&self, context: &BuildContext) -> Option<Arc<dyn ReceiptReader>> {
        Some(Arc::new(VonageReceipts {
            secret: context.receipt_secret.clone(),
        }))
    }
}
