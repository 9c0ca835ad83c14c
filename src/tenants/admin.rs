//! What `otpd tenant add|rotate|revoke|list` does: keys made, rotated, revoked and listed.

use rand::rngs::OsRng;
use rand::RngCore;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::keys_file::{edit_keys, hash_key, id_from_hash, read_keys, KeyHash, KeyRecord};
use super::TenantError;
use crate::access::TenantSettings;
use crate::access::Tenants;
use crate::domain::is_name;
use crate::domain::Timestamp;

/// A new API key: `otpd_` and 64 hex digits of OS randomness.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("otpd_{}", hex::encode(bytes))
}

fn random_id() -> String {
    let mut bytes = [0u8; 4];
    OsRng.fill_bytes(&mut bytes);
    format!("key_{}", hex::encode(bytes))
}

/// A key just made: shown once, never stored.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub id: String,
    pub key: String,
}

fn new_key(records: &[KeyRecord], tenant: &str, now: Timestamp) -> (KeyRecord, IssuedKey) {
    let key = generate_key();
    let id = loop {
        let id = random_id();
        if !records.iter().any(|r| r.tenant == tenant && r.id == id) {
            break id;
        }
    };
    let record = KeyRecord {
        tenant: tenant.to_owned(),
        hash: hash_key(&key),
        id: id.clone(),
        created: Some(now),
        revoked: None,
    };
    (record, IssuedKey { id, key })
}

/// Creates a key for `tenant` (new or existing), stores its hash, and returns the key
/// (shown once).
pub fn add_key(store_dir: &Path, tenant: &str) -> Result<IssuedKey, TenantError> {
    if !is_name(tenant) {
        return Err(TenantError::InvalidName(tenant.to_owned()));
    }
    edit_keys(store_dir, |records| {
        let (record, issued) = new_key(records, tenant, Timestamp::now());
        records.push(record);
        Ok(issued)
    })
}

/// A rotation: the new key, and the ids of the keys still valid beside it.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub issued: IssuedKey,
    pub previous: Vec<String>,
}

fn tenant_exists(records: &[KeyRecord], settings: &Tenants, tenant: &str) -> bool {
    settings.contains_key(tenant) || records.iter().any(|r| r.tenant == tenant)
}

/// Adds a key to an existing tenant. Its other keys stay valid until revoked, so clients
/// can move to the new one without downtime.
pub fn rotate_key(
    store_dir: &Path,
    settings: &Tenants,
    tenant: &str,
) -> Result<Rotation, TenantError> {
    edit_keys(store_dir, |records| {
        if !tenant_exists(records, settings, tenant) {
            return Err(TenantError::UnknownTenant(tenant.to_owned()));
        }
        let previous = active_ids(records, settings, tenant);
        let (record, issued) = new_key(records, tenant, Timestamp::now());
        records.push(record);
        Ok(Rotation { issued, previous })
    })
}

/// The valid keys of `tenant`: from the keys file, then from the settings.
fn active_ids(records: &[KeyRecord], settings: &Tenants, tenant: &str) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| r.tenant == tenant && r.revoked.is_none())
        .map(|r| r.id.clone())
        .collect();
    ids.extend(settings_key_ids(settings, tenant));
    ids
}

fn settings_key_ids(settings: &Tenants, tenant: &str) -> Vec<String> {
    settings
        .get(tenant)
        .map(|t| {
            t.api_key_sha256
                .iter()
                .filter_map(|hash| hex::decode(hash).ok()?.try_into().ok())
                .map(|hash: KeyHash| id_from_hash(&hash))
                .collect()
        })
        .unwrap_or_default()
}

/// Which keys to revoke.
#[derive(Debug, Clone)]
pub enum Revoke {
    Key(String),
    All,
}

/// What a revocation did.
#[derive(Debug, Clone)]
pub struct Revocation {
    pub revoked: Vec<String>,
    /// Keys of the tenant still valid afterwards.
    pub remaining: Vec<String>,
}

/// Marks keys of `tenant` revoked; a running server refuses them from its next request.
/// Revoking a tenant's last valid key by id needs `force` (`Revoke::All` says so already).
pub fn revoke_keys(
    store_dir: &Path,
    settings: &Tenants,
    tenant: &str,
    which: &Revoke,
    force: bool,
) -> Result<Revocation, TenantError> {
    let now = Timestamp::now();
    edit_keys(store_dir, |records| {
        if !tenant_exists(records, settings, tenant) {
            return Err(TenantError::UnknownTenant(tenant.to_owned()));
        }
        let revoked = match which {
            Revoke::All => {
                let mut revoked = Vec::new();
                for record in records.iter_mut() {
                    if record.tenant == tenant && record.revoked.is_none() {
                        record.revoked = Some(now);
                        revoked.push(record.id.clone());
                    }
                }
                revoked
            }
            Revoke::Key(id) => {
                let Some(index) = records
                    .iter()
                    .position(|r| r.tenant == tenant && &r.id == id)
                else {
                    if settings_key_ids(settings, tenant).contains(id) {
                        return Err(TenantError::KeyInSettings {
                            tenant: tenant.to_owned(),
                            id: id.clone(),
                        });
                    }
                    let known: Vec<String> = records
                        .iter()
                        .filter(|r| r.tenant == tenant)
                        .map(|r| r.id.clone())
                        .collect();
                    return Err(TenantError::UnknownKey {
                        tenant: tenant.to_owned(),
                        id: id.clone(),
                        known: if known.is_empty() {
                            "none in the keys file".into()
                        } else {
                            known.join(", ")
                        },
                    });
                };
                if let Some(at) = records[index].revoked {
                    return Err(TenantError::AlreadyRevoked {
                        tenant: tenant.to_owned(),
                        id: id.clone(),
                        at: at.to_rfc3339(),
                    });
                }
                records[index].revoked = Some(now);
                if !force && active_ids(records, settings, tenant).is_empty() {
                    return Err(TenantError::LastKey {
                        tenant: tenant.to_owned(),
                        id: id.clone(),
                    });
                }
                vec![id.clone()]
            }
        };
        Ok(Revocation {
            revoked,
            remaining: active_ids(records, settings, tenant),
        })
    })
}

/// Where a listed key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    File,
    Settings,
}

/// One key as `otpd tenant list` shows it: never the key, never its hash.
#[derive(Debug, Clone)]
pub struct KeyListing {
    pub id: String,
    pub created: Option<Timestamp>,
    pub revoked: Option<Timestamp>,
    pub source: KeySource,
}

/// One tenant as `otpd tenant list` shows it.
#[derive(Debug, Clone)]
pub struct TenantListing {
    pub name: String,
    pub keys: Vec<KeyListing>,
    pub settings: TenantSettings,
}

/// Every tenant of the keys file and the settings, with its keys and settings.
pub fn list_tenants(
    store_dir: &Path,
    settings: &Tenants,
) -> Result<Vec<TenantListing>, TenantError> {
    let records = read_keys(store_dir)?;
    let mut tenants: BTreeMap<String, Vec<KeyListing>> = BTreeMap::new();
    for name in settings.keys() {
        let keys = settings_key_ids(settings, name)
            .into_iter()
            .map(|id| KeyListing {
                id,
                created: None,
                revoked: None,
                source: KeySource::Settings,
            });
        tenants.entry(name.clone()).or_default().extend(keys);
    }
    for record in records {
        tenants.entry(record.tenant).or_default().push(KeyListing {
            id: record.id,
            created: record.created,
            revoked: record.revoked,
            source: KeySource::File,
        });
    }
    Ok(tenants
        .into_iter()
        .map(|(name, keys)| TenantListing {
            settings: settings.get(&name).cloned().unwrap_or_default(),
            name,
            keys,
        })
        .collect())
}

/// The text of `otpd tenant list`.
pub fn render_listing(tenants: &[TenantListing]) -> String {
    let mut text = String::new();
    if tenants.is_empty() {
        text.push_str("No tenants yet; create one with `otpd tenant add NAME`.\n");
    }
    for tenant in tenants {
        let _ = writeln!(text, "tenant {}", tenant.name);
        let _ = writeln!(
            text,
            "  account SID: {} (the user name of the Twilio-compatible API)",
            super::account_sid(&tenant.name)
        );
        let _ = writeln!(text, "  settings: {}", settings_summary(&tenant.settings));
        if tenant.keys.is_empty() {
            let _ = writeln!(
                text,
                "  no keys (add one with `otpd tenant add {}`)",
                tenant.name
            );
        }
        for key in &tenant.keys {
            let created = key
                .created
                .map_or_else(|| "-".to_owned(), Timestamp::to_rfc3339);
            let status = match (key.revoked, key.source) {
                (Some(at), _) => format!("revoked {}", at.to_rfc3339()),
                (None, KeySource::Settings) => {
                    format!("active (tenants.{}.api_key_sha256)", tenant.name)
                }
                (None, KeySource::File) => "active".to_owned(),
            };
            let _ = writeln!(text, "  {}  created {created:<20}  {status}", key.id);
        }
    }
    text
}

fn settings_summary(settings: &TenantSettings) -> String {
    let list = |items: Vec<String>, empty: &str| {
        if items.is_empty() {
            empty.to_owned()
        } else {
            items.join(",")
        }
    };
    let cap = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
    format!(
        "channels={} countries={} number_types={} sends/hour={} sends/day={} spend/hour={} spend/day={} admin={}",
        if crate::domain::Channel::by_default().eq(settings.channels.iter().copied()) {
            "default".to_owned()
        } else {
            list(settings.channels.iter().map(|c| c.to_string()).collect(), "none")
        },
        list(settings.countries.clone(), "all"),
        list(
            settings
                .number_types
                .iter()
                .map(|t| crate::access::permissions::type_name(*t))
                .collect(),
            "any"
        ),
        cap(settings.sends_per_hour),
        cap(settings.sends_per_day),
        cap(settings.spend_per_hour),
        cap(settings.spend_per_day),
        settings.admin,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::tenants::{keys_file, ApiKeys};

    fn settings() -> Settings {
        Settings::load(None).unwrap()
    }

    #[test]
    fn added_keys_are_found_and_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ApiKeys::load(&settings().tenants, dir.path()).unwrap();
        let issued = add_key(dir.path(), "acme").unwrap();
        assert_eq!(keys.tenant_for(&issued.key).as_deref(), Some("acme"));
        assert_eq!(keys.tenant_for("otpd_wrong"), None);
        let stored = std::fs::read_to_string(keys_file(dir.path())).unwrap();
        assert!(!stored.contains(&issued.key));
        assert!(stored.contains(&format!("id={}", issued.id)));
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(keys_file(dir.path()))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn refuses_bad_tenant_names() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            add_key(dir.path(), "Bad Name"),
            Err(TenantError::InvalidName(_))
        ));
    }

    #[test]
    fn the_last_key_needs_force_and_all_revokes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings();
        let only = add_key(dir.path(), "acme").unwrap();
        let refused = revoke_keys(
            dir.path(),
            &settings.tenants,
            "acme",
            &Revoke::Key(only.id.clone()),
            false,
        );
        assert!(
            matches!(refused, Err(TenantError::LastKey { .. })),
            "{refused:?}"
        );
        let keys = ApiKeys::load(&settings.tenants, dir.path()).unwrap();
        assert_eq!(keys.tenant_for(&only.key).as_deref(), Some("acme"));

        add_key(dir.path(), "acme").unwrap();
        let all = revoke_keys(dir.path(), &settings.tenants, "acme", &Revoke::All, false).unwrap();
        assert_eq!(all.revoked.len(), 2);
        assert!(all.remaining.is_empty());
        assert_eq!(keys.tenant_for(&only.key), None);
        assert!(!keys.has_tenant("acme"));
    }

    #[test]
    fn unknown_tenants_and_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings();
        assert!(matches!(
            rotate_key(dir.path(), &settings.tenants, "ghost"),
            Err(TenantError::UnknownTenant(_))
        ));
        let issued = add_key(dir.path(), "acme").unwrap();
        let error = revoke_keys(
            dir.path(),
            &settings.tenants,
            "acme",
            &Revoke::Key("key_00000000".into()),
            false,
        )
        .unwrap_err();
        assert!(error.to_string().contains(&issued.id), "{error}");
        revoke_keys(
            dir.path(),
            &settings.tenants,
            "acme",
            &Revoke::Key(issued.id.clone()),
            true,
        )
        .unwrap();
        let again = revoke_keys(
            dir.path(),
            &settings.tenants,
            "acme",
            &Revoke::Key(issued.id),
            true,
        );
        assert!(matches!(again, Err(TenantError::AlreadyRevoked { .. })));
    }
}
