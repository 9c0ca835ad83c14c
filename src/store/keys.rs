//! The key layout of the records: a prefix per record kind, and an expiry index.

use crate::domain::fraud::Prefix;
use crate::domain::{DestinationKey, IdempotencyKey, JobId, Timestamp, VerificationId};

pub const VERIFICATION: &[u8] = b"v/";
pub const DESTINATION: &[u8] = b"d/";
pub const IDEMPOTENCY: &[u8] = b"i/";
pub const OUTBOX: &[u8] = b"o/";
pub const QUOTA: &[u8] = b"q/";
pub const MESSAGE: &[u8] = b"m/";
/// `u/<tenant>`: a tenant's usage against its send and spend caps.
pub const TENANT_USAGE: &[u8] = b"u/";
/// `b/<entry>`: an entry of the operator's blocklist.
pub const BLOCKLIST: &[u8] = b"b/";
/// `f/<prefix>`: a fraud block of a number prefix, until it ends.
pub const FRAUD_BLOCK: &[u8] = b"f/";
/// `x/<purge time, 8 bytes big-endian><primary key>`: what to look at when sweeping.
pub const EXPIRY: &[u8] = b"x/";

pub fn verification(id: &VerificationId) -> Vec<u8> {
    [VERIFICATION, id.as_str().as_bytes()].concat()
}

pub fn destination(key: &DestinationKey) -> Vec<u8> {
    [
        DESTINATION,
        key.tenant.as_bytes(),
        &[0],
        key.channel.as_str().as_bytes(),
        &[0],
        key.to.as_bytes(),
    ]
    .concat()
}

pub fn idempotency(key: &IdempotencyKey) -> Vec<u8> {
    [IDEMPOTENCY, key.tenant.as_bytes(), &[0], key.key.as_bytes()].concat()
}

pub fn outbox(job: &JobId) -> Vec<u8> {
    [OUTBOX, job.as_str().as_bytes()].concat()
}

pub fn message(provider: &str, provider_message_id: &str) -> Vec<u8> {
    [
        MESSAGE,
        provider.as_bytes(),
        &[0],
        provider_message_id.as_bytes(),
    ]
    .concat()
}

pub fn quota(provider: &str) -> Vec<u8> {
    [QUOTA, provider.as_bytes()].concat()
}

pub fn tenant_usage(tenant: &str) -> Vec<u8> {
    [TENANT_USAGE, tenant.as_bytes()].concat()
}

pub fn block_entry(entry: &str) -> Vec<u8> {
    [BLOCKLIST, entry.as_bytes()].concat()
}

pub fn fraud_block(prefix: &Prefix) -> Vec<u8> {
    [FRAUD_BLOCK, prefix.as_str().as_bytes()].concat()
}

pub fn expiry(purge_at: Timestamp, primary: &[u8]) -> Vec<u8> {
    [EXPIRY, &purge_at.to_be_bytes(), primary].concat()
}

/// The first expiry-index key after every entry due at or before `now`.
pub fn expiry_end(now: Timestamp) -> Vec<u8> {
    [EXPIRY, &Timestamp(now.0.saturating_add(1)).to_be_bytes()].concat()
}

/// The primary key an expiry-index entry points at.
pub fn expiry_target(index_key: &[u8]) -> Option<&[u8]> {
    index_key.get(EXPIRY.len() + 8..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keys_sort_by_time_and_point_back() {
        let id = VerificationId::generate();
        let early = expiry(Timestamp(5), &verification(&id));
        let late = expiry(Timestamp(300), &verification(&id));
        assert!(early < late);
        assert!(early < expiry_end(Timestamp(5)));
        assert!(late > expiry_end(Timestamp(5)));
        assert_eq!(expiry_target(&late), Some(verification(&id).as_slice()));
    }
}
