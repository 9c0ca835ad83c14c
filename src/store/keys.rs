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
/// `x/<purge time, 8 bytes big-endian><primary key>`: what to look at when sweeping. The
/// entry's value names further keys due at the same time ([`expiry_companions`]), so the
/// records one issue writes share one entry.
pub const EXPIRY: &[u8] = b"x/";
/// `n/<due time, 8 bytes big-endian><verification id>`: a workflow step due then, for the
/// clock that moves workflows on.
pub const WORKFLOW_STEP: &[u8] = b"n/";

/// `v/<the second its id was made><id>`: verifications lie in the order they were made, so
/// the writes of a moment touch a few neighbouring pages of the store rather than pages all
/// over it (on sled a write among recent keys costs about 4 µs against 10 µs for one at
/// random over a tree of 300,000, and a node catching up applies them the faster). Those
/// made before ids carried their second are under [`verification_as_first_stored`].
pub fn verification(id: &VerificationId) -> Vec<u8> {
    [VERIFICATION, id.made().as_bytes(), id.as_str().as_bytes()].concat()
}

/// `v/<id>`: where verifications made before ids carried their second are.
pub fn verification_as_first_stored(id: &VerificationId) -> Vec<u8> {
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

/// `o/<the second its verification was made><job id>`: jobs in the order their
/// verifications were made, as [`verification`] keeps those. Jobs queued before ids
/// carried their second are under [`outbox_as_first_stored`].
pub fn outbox(job: &JobId) -> Vec<u8> {
    [OUTBOX, job.made().as_bytes(), job.as_str().as_bytes()].concat()
}

/// `o/<job id>`: where jobs queued before ids carried their second are.
pub fn outbox_as_first_stored(job: &JobId) -> Vec<u8> {
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

pub fn workflow_step(due: Timestamp, id: &VerificationId) -> Vec<u8> {
    [WORKFLOW_STEP, &due.to_be_bytes(), id.as_str().as_bytes()].concat()
}

/// The first workflow-step key after every step due at or before `now`.
pub fn workflow_steps_end(now: Timestamp) -> Vec<u8> {
    [
        WORKFLOW_STEP,
        &Timestamp(now.0.saturating_add(1)).to_be_bytes(),
    ]
    .concat()
}

/// The due time and the verification of a workflow-step key.
pub fn read_workflow_step(key: &[u8]) -> Option<(Timestamp, VerificationId)> {
    let rest = key.strip_prefix(WORKFLOW_STEP)?;
    let (due, id) = rest.split_first_chunk::<8>()?;
    let id = VerificationId::parse(std::str::from_utf8(id).ok()?)?;
    Some((Timestamp(u64::from_be_bytes(*due)), id))
}

/// The first expiry-index key after every entry due at or before `now`.
pub fn expiry_end(now: Timestamp) -> Vec<u8> {
    [EXPIRY, &Timestamp(now.0.saturating_add(1)).to_be_bytes()].concat()
}

/// The purge time and the primary key of an expiry-index entry's key.
pub fn read_expiry(index_key: &[u8]) -> Option<(Timestamp, &[u8])> {
    let (purge_at, primary) = index_key.strip_prefix(EXPIRY)?.split_first_chunk::<8>()?;
    Some((Timestamp(u64::from_be_bytes(*purge_at)), primary))
}

/// The primary key an expiry-index entry points at.
pub fn expiry_target(index_key: &[u8]) -> Option<&[u8]> {
    read_expiry(index_key).map(|(_, primary)| primary)
}

/// An expiry-index entry's value naming `companions`, the keys due with its primary key:
/// each as its length (2 bytes big-endian) and its bytes. No companions: the empty value
/// every entry had before companions existed.
pub fn expiry_companions(companions: &[&[u8]]) -> Vec<u8> {
    let mut value = Vec::with_capacity(companions.iter().map(|key| key.len() + 2).sum());
    for key in companions {
        let length = u16::try_from(key.len()).expect("a record key is shorter than 64 KiB");
        value.extend_from_slice(&length.to_be_bytes());
        value.extend_from_slice(key);
    }
    value
}

/// The companions an expiry-index entry's value names; `None` if the value is not one
/// [`expiry_companions`] wrote.
pub fn read_expiry_companions(mut value: &[u8]) -> Option<Vec<&[u8]>> {
    let mut companions = Vec::new();
    while let Some((length, rest)) = value.split_first_chunk::<2>() {
        let length = usize::from(u16::from_be_bytes(*length));
        companions.push(rest.get(..length)?);
        value = &rest[length..];
    }
    value.is_empty().then_some(companions)
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

    #[test]
    fn verifications_and_their_jobs_lie_in_the_order_they_were_made() {
        let at = |second: u64, slot: u32| {
            VerificationId::generate_in(slot, Timestamp::from_secs(second))
        };
        let (early, late) = (at(1_800_000_000, u32::MAX), at(1_800_000_001, 0));
        assert!(verification(&early) < verification(&late));
        assert!(outbox(&JobId::new(&early, 9)) < outbox(&JobId::new(&late, 1)));
        assert_eq!(
            verification_as_first_stored(&early),
            [b"v/", early.as_str().as_bytes()].concat()
        );
        assert_eq!(JobId::new(&late, 1).made(), late.made());
    }

    #[test]
    fn workflow_steps_sort_by_time_and_read_back() {
        let id = VerificationId::generate();
        let early = workflow_step(Timestamp(5), &id);
        assert!(early < workflow_steps_end(Timestamp(5)));
        assert!(workflow_step(Timestamp(6), &id) > workflow_steps_end(Timestamp(5)));
        assert_eq!(read_workflow_step(&early), Some((Timestamp(5), id)));
        assert_eq!(read_workflow_step(b"n/short"), None);
    }

    #[test]
    fn companions_read_back_as_written() {
        let (outbox, destination) = (b"o/job".as_slice(), b"d/acme\0sms\0+2348".as_slice());
        let value = expiry_companions(&[outbox, destination]);
        assert_eq!(
            read_expiry_companions(&value),
            Some(vec![outbox, destination])
        );
        assert_eq!(read_expiry_companions(&[]), Some(vec![]), "an entry of old");
        assert_eq!(read_expiry_companions(&value[..value.len() - 1]), None);
        assert_eq!(read_expiry_companions(&[0]), None);
    }
}
