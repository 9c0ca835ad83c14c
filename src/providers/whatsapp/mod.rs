//! WhatsApp: codes as authentication templates through the WhatsApp Business Cloud API;
//! message statuses from its signed webhooks.

mod adapter;
pub mod receipts;

use std::sync::Arc;

use crate::domain::Channel;
use crate::providers::kind::{BuildContext, BuildError, ProviderKind};
use crate::providers::receipts::ReceiptReader;
use crate::providers::Provider;
pub use adapter::{
    classify_error, WhatsappConfig, WhatsappProvider, DEFAULT_API_VERSION, DEFAULT_BASE_URL,
    THROTTLED_WAIT,
};
pub use receipts::{whatsapp_signature, WhatsappReceipts, WHATSAPP_SIGNATURE_HEADER};

impl ProviderKind for WhatsappConfig {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Whatsapp]
    }

    fn validate(&self, prefix: &str) -> Vec<String> {
        WhatsappConfig::validate(self, prefix)
    }

    fn build(&self, id: &str, _: &BuildContext) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(WhatsappProvider::new(id, self.clone())?))
    }

    fn receipts(&self, _: &BuildContext) -> Option<Arc<dyn ReceiptReader>> {
        Some(Arc::new(WhatsappReceipts {
            app_secret: self.app_secret.clone(),
            verify_token: self.verify_token.clone(),
        }))
    }
}
