//! A destination's slot: a stable 32-bit hash of tenant, channel and address. A cluster
//! keeps all state of one destination in partition `slot mod partitions`; the same inputs
//! give the same slot on every node and every version (FNV-1a, not the std hasher). Other
//! state the cluster shares (a tenant's usage, a provider's quota) has a slot of its name.

use super::records::DestinationKey;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The slot of a key made of `parts`; each part ends with a byte no UTF-8 text holds, so
/// parts do not run together.
pub fn slot_of(parts: &[&[u8]]) -> u32 {
    let mut hash = FNV_OFFSET;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}

/// The slot of the lists every node enforces (the blocklist, fraud blocks): one partition
/// keeps them all.
pub fn lists_slot() -> u32 {
    slot_of(&[b"~lists"])
}

impl DestinationKey {
    pub fn slot(&self) -> u32 {
        slot_of(&[
            self.tenant.as_bytes(),
            self.channel.as_str().as_bytes(),
            self.to.as_bytes(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Channel;

    fn key(tenant: &str, channel: Channel, to: &str) -> DestinationKey {
        DestinationKey {
            tenant: tenant.into(),
            channel,
            to: to.into(),
        }
    }

    #[test]
    fn the_slot_is_stable_across_builds() {
        // A changed slot would move every destination to another partition: pinned here
        // (the value computed independently of this code).
        assert_eq!(
            key("acme", Channel::Sms, "+4915112345678").slot(),
            0x5757_fada
        );
    }

    #[test]
    fn each_part_counts_and_parts_do_not_run_together() {
        let base = key("acme", Channel::Sms, "+4915112345678");
        assert_ne!(
            base.slot(),
            key("acme2", Channel::Sms, "+4915112345678").slot()
        );
        assert_ne!(
            base.slot(),
            key("acme", Channel::Email, "+4915112345678").slot()
        );
        assert_ne!(
            key("ab", Channel::Sms, "c").slot(),
            key("a", Channel::Sms, "bc").slot()
        );
    }
}
