//! Tenants and their API keys. Keys are stored only as SHA-256 hashes: in the settings, or
//! in `<store dir>/api-keys` (one `<tenant> <hash>` line per key, written by
//! `otpd tenant add`). The running server re-reads that file when it changes.

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use crate::config::{is_name, Settings};

/// The tenant created on a first start with no tenant configured.
pub const DEV_TENANT: &str = "dev";

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
    #[error("{path} line {line} is malformed; each line must be '<tenant> <64 hex digits>'")]
    Malformed { path: PathBuf, line: usize },
}

type KeyHash = [u8; 32];

/// SHA-256 of a presented key.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// A new API key: `otpd_` and 64 hex digits of OS randomness.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("otpd_{}", hex::encode(bytes))
}

pub fn keys_file(store_dir: &Path) -> PathBuf {
    store_dir.join("api-keys")
}

/// Creates a key for `tenant`, stores its hash, and returns the key (shown once).
pub fn add_key(store_dir: &Path, tenant: &str) -> Result<String, TenantError> {
    if !is_name(tenant) {
        return Err(TenantError::InvalidName(tenant.to_owned()));
    }
    let path = keys_file(store_dir);
    let key = generate_key();
    let line = format!("{tenant} {}\n", hex::encode(hash_key(&key)));
    let io = |source| TenantError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(store_dir).map_err(io)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(key)
}

/// On a first start with no tenant anywhere, creates tenant `dev` and writes its key to
/// `<store dir>/dev-api-key` (mode 0600). Returns that path when it did.
pub fn bootstrap_dev_tenant(
    settings: &Settings,
    store_dir: &Path,
) -> Result<Option<PathBuf>, TenantError> {
    let path = keys_file(store_dir);
    let has_file_keys = std::fs::metadata(&path)
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    if !settings.tenants.is_empty() || has_file_keys {
        return Ok(None);
    }
    let key = add_key(store_dir, DEV_TENANT)?;
    let key_path = store_dir.join("dev-api-key");
    let _ = std::fs::remove_file(&key_path);
    crate::secrets::write_private_file(&key_path, format!("{key}\n").as_bytes()).map_err(
        |source| TenantError::Io {
            path: key_path.clone(),
            source,
        },
    )?;
    Ok(Some(key_path))
}

/// Finds the tenant a presented API key belongs to.
pub struct ApiKeys {
    configured: HashMap<KeyHash, String>,
    file: PathBuf,
    from_file: RwLock<FileKeys>,
}

#[derive(Default)]
struct FileKeys {
    stamp: Option<(SystemTime, u64)>,
    keys: HashMap<KeyHash, String>,
}

impl ApiKeys {
    pub fn load(settings: &Settings, store_dir: &Path) -> Result<Self, TenantError> {
        let configured = settings
            .tenants
            .iter()
            .flat_map(|(tenant, t)| {
                t.api_key_sha256.iter().filter_map(move |hash| {
                    let bytes: KeyHash = hex::decode(hash).ok()?.try_into().ok()?;
                    Some((bytes, tenant.clone()))
                })
            })
            .collect();
        let keys = ApiKeys {
            configured,
            file: keys_file(store_dir),
            from_file: RwLock::new(FileKeys::default()),
        };
        keys.reload_if_changed()?;
        Ok(keys)
    }

    /// The tenant of `presented`, if it is a known key.
    pub fn tenant_for(&self, presented: &str) -> Option<String> {
        let hash = hash_key(presented);
        if let Some(tenant) = self.configured.get(&hash) {
            return Some(tenant.clone());
        }
        if let Some(tenant) = self.read_file_keys().keys.get(&hash) {
            return Some(tenant.clone());
        }
        if let Err(error) = self.reload_if_changed() {
            tracing::warn!(%error, "Could not re-read the API keys file.");
        }
        self.read_file_keys().keys.get(&hash).cloned()
    }

    /// Whether `name` is a tenant with at least one key.
    pub fn has_tenant(&self, name: &str) -> bool {
        let known = |keys: &HashMap<KeyHash, String>| keys.values().any(|t| t == name);
        if known(&self.configured) || known(&self.read_file_keys().keys) {
            return true;
        }
        if let Err(error) = self.reload_if_changed() {
            tracing::warn!(%error, "Could not re-read the API keys file.");
        }
        known(&self.read_file_keys().keys)
    }

    fn read_file_keys(&self) -> std::sync::RwLockReadGuard<'_, FileKeys> {
        self.from_file.read().unwrap_or_else(|p| p.into_inner())
    }

    fn reload_if_changed(&self) -> Result<(), TenantError> {
        let stamp = std::fs::metadata(&self.file)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp == self.read_file_keys().stamp {
            return Ok(());
        }
        let text = match std::fs::read_to_string(&self.file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(TenantError::Io {
                    path: self.file.clone(),
                    source,
                })
            }
        };
        let keys = parse_keys_file(&text).map_err(|line| TenantError::Malformed {
            path: self.file.clone(),
            line,
        })?;
        *self.from_file.write().unwrap_or_else(|p| p.into_inner()) = FileKeys { stamp, keys };
        Ok(())
    }
}

/// Parses `<tenant> <hex hash>` lines; the error is the first bad line's number.
fn parse_keys_file(text: &str) -> Result<HashMap<KeyHash, String>, usize> {
    let mut keys = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(tenant), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(index + 1);
        };
        let hash: KeyHash = hex::decode(hash)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(index + 1)?;
        if !is_name(tenant) {
            return Err(index + 1);
        }
        keys.insert(hash, tenant.to_owned());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_keys_are_found_and_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::load(None).unwrap();
        let keys = ApiKeys::load(&settings, dir.path()).unwrap();
        let key = add_key(dir.path(), "acme").unwrap();
        assert_eq!(keys.tenant_for(&key).as_deref(), Some("acme"));
        assert_eq!(keys.tenant_for("otpd_wrong"), None);
        let stored = std::fs::read_to_string(keys_file(dir.path())).unwrap();
        assert!(!stored.contains(&key));
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
    fn bootstraps_dev_once() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::load(None).unwrap();
        let path = bootstrap_dev_tenant(&settings, dir.path())
            .unwrap()
            .unwrap();
        let key = std::fs::read_to_string(&path).unwrap();
        let keys = ApiKeys::load(&settings, dir.path()).unwrap();
        assert_eq!(keys.tenant_for(key.trim()).as_deref(), Some(DEV_TENANT));
        assert!(bootstrap_dev_tenant(&settings, dir.path())
            .unwrap()
            .is_none());
    }

    #[test]
    fn reports_the_malformed_line() {
        assert_eq!(parse_keys_file("acme 00\n"), Err(1));
        assert_eq!(parse_keys_file("# comment\n\nacme").unwrap_err(), 3);
    }
}
