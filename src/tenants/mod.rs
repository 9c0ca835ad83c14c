//! Tenants and their API keys. Keys are stored only as SHA-256 hashes: in the settings, or
//! in `<store dir>/api-keys` (one `<tenant> <hash> id=<key id> created=<time> [revoked=<time>]`
//! line per key, written atomically by `otpd tenant add|rotate|revoke`). The running server
//! checks that file on every lookup, so a revoked key is refused from the next request on.
//! By job: `keys_file` (the file's format and locked edits), `lookup` (`ApiKeys`, on every
//! request), `admin` (what `otpd tenant` does), `bootstrap` (tenant `dev` on a first start)
//! and `sids` (a tenant's names in the Twilio-compatible API).

mod admin;
mod bootstrap;
mod keys_file;
mod lookup;
mod sids;

pub use admin::{
    add_key, generate_key, list_tenants, render_listing, revoke_keys, rotate_key, IssuedKey,
    KeyListing, KeySource, Revocation, Revoke, Rotation, TenantListing,
};
pub use bootstrap::{bootstrap_dev_tenant, DEV_TENANT};
pub use keys_file::{hash_key, id_from_hash, keys_file, parse_keys_file, read_keys, KeyRecord};
pub use lookup::ApiKeys;
pub use sids::{account_sid, service_sid};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(
        "'{0}' is not a valid tenant name: use lower-case letters, digits and '-' (at most 64)"
    )]
    InvalidName(String),
    #[error("could not update {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line} is malformed; each line must be '<tenant> <64 hex digits>' optionally followed by id=, created= and revoked= fields")]
    Malformed { path: PathBuf, line: usize },
    #[error("there is no tenant '{0}'; create it with `otpd tenant add {0}` (`otpd tenant list` shows the tenants)")]
    UnknownTenant(String),
    #[error("tenant '{tenant}' has no key {id}; its keys are: {known} (see `otpd tenant list`)")]
    UnknownKey {
        tenant: String,
        id: String,
        known: String,
    },
    #[error("key {id} of tenant '{tenant}' is configured in tenants.{tenant}.api_key_sha256; remove it from the settings and restart otpd to revoke it")]
    KeyInSettings { tenant: String, id: String },
    #[error("key {id} of tenant '{tenant}' was already revoked at {at}")]
    AlreadyRevoked {
        tenant: String,
        id: String,
        at: String,
    },
    #[error("key {id} is the last valid key of tenant '{tenant}': revoking it cuts the tenant off. Run `otpd tenant rotate {tenant}` first to give its clients a new key, or add --force to revoke it anyway")]
    LastKey { tenant: String, id: String },
    #[error("another `otpd tenant` command is editing {path}; retry when it is done (if none is running, delete {path})")]
    Busy { path: PathBuf },
}
