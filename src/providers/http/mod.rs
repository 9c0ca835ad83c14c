//! A generic HTTP gateway: one request per message to a configured URL, for any channel
//! (the body template carries `{channel}`); receipts in otpd's own format with a shared secret.

mod adapter;
mod body;
pub mod receipts;

use std::sync::Arc;

use crate::domain::Channel;
use crate::providers::kind::{BuildContext, BuildError, ProviderKind};
use crate::providers::receipts::ReceiptReader;
use crate::providers::Provider;
pub use adapter::{HttpConfig, HttpProvider};
pub use receipts::{parse_generic, GenericAuth, GenericReceipts};

impl ProviderKind for HttpConfig {
    fn channels(&self) -> Vec<Channel> {
        Channel::all().collect()
    }

    fn validate(&self, prefix: &str) -> Vec<String> {
        HttpConfig::validate(self, prefix)
    }

    fn build(&self, id: &str, _: &BuildContext) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(HttpProvider::new(id, self.clone())?))
    }

    fn receipts(&self, context: &BuildContext) -> Option<Arc<dyn ReceiptReader>> {
        Some(Arc::new(GenericReceipts {
            auth: GenericAuth::SharedSecret(context.receipt_secret.clone()),
        }))
    }
}
