//! SMTP: email through a relay (STARTTLS, implicit TLS, or plain on loopback only).

mod adapter;

use std::sync::Arc;

use crate::domain::Channel;
use crate::providers::kind::{BuildContext, BuildError, ProviderKind};
use crate::providers::Provider;
pub use adapter::{SmtpConfig, SmtpProvider, SmtpTls};

impl ProviderKind for SmtpConfig {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Email]
    }

    fn validate(&self, prefix: &str) -> Vec<String> {
        self.check(prefix)
    }

    fn build(&self, id: &str, _: &BuildContext) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(SmtpProvider::new(id, self.clone())?))
    }
}
