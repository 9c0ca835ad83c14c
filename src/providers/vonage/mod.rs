//! Vonage: SMS through the SMS API, delivery receipts with a shared secret.

mod adapter;
pub mod receipts;

use std::sync::Arc;

use crate::domain::Channel;
use crate::providers::kind::{BuildContext, BuildError, ProviderKind};
use crate::providers::receipts::ReceiptReader;
use crate::providers::Provider;
pub use adapter::{VonageConfig, VonageProvider};
pub use receipts::VonageReceipts;

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
