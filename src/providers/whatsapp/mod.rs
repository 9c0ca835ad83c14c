//! WhatsApp: codes as authentication templates through the WhatsApp Business Cloud API.

mod adapter;

use std::sync::Arc;

use crate::domain::Channel;
use crate::providers::kind::{BuildContext, BuildError, ProviderKind};
use crate::providers::Provider;
pub use adapter::{
    classify_error, WhatsappConfig, WhatsappProvider, DEFAULT_API_VERSION, DEFAULT_BASE_URL,
    THROTTLED_WAIT,
};

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
}
