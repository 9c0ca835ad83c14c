//! The routing table from the settings: per region and channel, providers in order.

use std::collections::HashMap;

use crate::config::{Settings, DEFAULT_ROUTE};
use crate::domain::Channel;

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: HashMap<(String, Channel), Vec<String>>,
}

impl RouteTable {
    pub fn from_settings(settings: &Settings) -> Self {
        let mut routes = HashMap::new();
        for (region, channels) in &settings.routing {
            for channel in [Channel::Sms, Channel::Email] {
                let list = channels.for_channel(channel);
                if !list.is_empty() {
                    routes.insert((region.clone(), channel), list.to_vec());
                }
            }
        }
        RouteTable { routes }
    }

    /// The providers for `channel` in `region`, or the default ones.
    pub fn candidates(&self, region: &str, channel: Channel) -> &[String] {
        self.routes
            .get(&(region.to_owned(), channel))
            .or_else(|| self.routes.get(&(DEFAULT_ROUTE.to_owned(), channel)))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}
