//! The routing table from the settings: per region and channel, providers in order.

use std::collections::HashMap;

use super::settings::{RoutingSettings, DEFAULT_ROUTE};
use crate::domain::Channel;

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: HashMap<(String, Channel), Vec<String>>,
}

impl RouteTable {
    pub fn from_settings(routing: &RoutingSettings) -> Self {
        let routes = routing
            .regions
            .iter()
            .flat_map(|(region, channels)| {
                channels
                    .iter()
                    .filter(|(_, list)| !list.is_empty())
                    .map(|(channel, list)| ((region.clone(), *channel), list.clone()))
            })
            .collect();
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
