//! Twilio: SMS through Programmable Messaging (`twilio`), calls that read the code through
//! Programmable Voice (`twilio_voice`); status callbacks of both signed with the Auth Token.

mod adapter;
pub mod receipts;
mod voice;

use std::sync::Arc;

use crate::domain::Channel;
use crate::providers::kind::{BuildContext, BuildError, ProviderKind};
use crate::providers::receipts::ReceiptReader;
use crate::providers::Provider;
pub use adapter::{TwilioConfig, TwilioProvider, DEFAULT_BASE_URL};
pub use receipts::{twilio_signature, TwilioReceipts, TWILIO_SIGNATURE_HEADER};
pub use voice::{TwilioVoiceConfig, TwilioVoiceProvider};

impl ProviderKind for TwilioConfig {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Sms]
    }

    fn validate(&self, prefix: &str) -> Vec<String> {
        TwilioConfig::validate(self, prefix)
    }

    fn build(&self, id: &str, _: &BuildContext) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(TwilioProvider::new(id, self.clone())?))
    }

    fn receipts(&self, _: &BuildContext) -> Option<Arc<dyn ReceiptReader>> {
        Some(Arc::new(TwilioReceipts {
            auth_token: self.auth_token.clone(),
        }))
    }
}

impl ProviderKind for TwilioVoiceConfig {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Voice]
    }

    fn validate(&self, prefix: &str) -> Vec<String> {
        TwilioVoiceConfig::validate(self, prefix)
    }

    fn build(&self, id: &str, _: &BuildContext) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(TwilioVoiceProvider::new(id, self.clone())?))
    }

    fn receipts(&self, _: &BuildContext) -> Option<Arc<dyn ReceiptReader>> {
        Some(Arc::new(TwilioReceipts {
            auth_token: self.auth_token.clone(),
        }))
    }
}
