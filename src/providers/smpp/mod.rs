//! SMPP: SMS through an SMSC over one persistent transceiver bind (rusmpp's PDUs and codec);
//! its delivery receipts come back on the same bind, into the receipt inbox.

mod adapter;
mod receipts;
mod session;

use std::sync::Arc;

use crate::domain::Channel;
use crate::providers::kind::{BuildContext, BuildError, ProviderKind};
use crate::providers::Provider;
pub use adapter::{classify_status, SmppConfig, SmppProvider, MOST_BINDS, THROTTLED_WAIT};
pub use receipts::receipt_of;
pub use session::status_name;

impl ProviderKind for SmppConfig {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Sms]
    }

    fn validate(&self, prefix: &str) -> Vec<String> {
        SmppConfig::validate(self, prefix)
    }

    fn build(&self, id: &str, context: &BuildContext) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(SmppProvider::new(
            id,
            self.clone(),
            context.receipt_inbox.clone(),
        )?))
    }
}
