//! A connection's channel, held while the connection lasts and handed out behind one `Arc`:
//! a lapin channel's own clone counts some fifteen references, shared with the connection's
//! I/O thread, and every publish would pay for them.

use lapin::Channel;
use std::sync::{Arc, RwLock};

use crate::sync::ReadWriteUnpoisoned;

#[derive(Default)]
pub struct HeldChannel(RwLock<Option<Arc<Channel>>>);

impl HeldChannel {
    /// Holds `channel` from now on (`None`: the connection is gone).
    pub fn hold(&self, channel: Option<Channel>) {
        *self.0.write_unpoisoned() = channel.map(Arc::new);
    }

    /// The channel held, while its connection is open.
    pub fn open(&self) -> Option<Arc<Channel>> {
        self.0
            .read_unpoisoned()
            .clone()
            .filter(|channel| channel.status().connected())
    }
}
