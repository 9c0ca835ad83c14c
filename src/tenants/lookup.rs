//! The hot-path lookup of the tenant a presented API key belongs to (`ApiKeys`), which
//! re-reads the keys file whenever it changed.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use super::keys_file::{hash_key, keys_file, read_keys_at, KeyHash};
use super::TenantError;
use crate::access::Tenants;
use crate::sync::ReadWriteUnpoisoned;

/// Finds the tenant a presented API key belongs to.
pub struct ApiKeys {
    configured: HashMap<KeyHash, String>,
    file: PathBuf,
    from_file: RwLock<FileKeys>,
}

/// What identifies one version of the keys file: every edit renames a new file in, so the
/// inode changes; length and mtime catch edits made in place.
type FileStamp = (u64, u64, u64, i64, i64);

#[derive(Default)]
struct FileKeys {
    stamp: Option<FileStamp>,
    /// The valid (not revoked) keys of the file.
    keys: HashMap<KeyHash, String>,
}

impl ApiKeys {
    pub fn load(settings: &Tenants, store_dir: &Path) -> Result<Self, TenantError> {
        let configured = settings
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

    /// The tenant of `presented`, if it is a valid key. Checks the keys file first (one
    /// `stat`), so a key revoked a moment ago is refused.
    pub fn tenant_for(&self, presented: &str) -> Option<String> {
        let hash = hash_key(presented);
        if let Some(tenant) = self.configured.get(&hash) {
            return Some(tenant.clone());
        }
        self.refresh();
        self.read_file_keys().keys.get(&hash).cloned()
    }

    /// Whether `name` is a tenant with at least one valid key.
    pub fn has_tenant(&self, name: &str) -> bool {
        if self.configured.values().any(|t| t == name) {
            return true;
        }
        self.refresh();
        self.read_file_keys().keys.values().any(|t| t == name)
    }

    /// Every tenant with at least one valid key, in name order.
    pub fn tenants(&self) -> Vec<String> {
        self.refresh();
        let from_file = self.read_file_keys();
        let names: std::collections::BTreeSet<&String> = self
            .configured
            .values()
            .chain(from_file.keys.values())
            .collect();
        names.into_iter().cloned().collect()
    }

    fn refresh(&self) {
        if let Err(error) = self.reload_if_changed() {
            tracing::warn!(%error, "Could not re-read the API keys file; the keys read before stay in use.");
        }
    }

    fn read_file_keys(&self) -> std::sync::RwLockReadGuard<'_, FileKeys> {
        self.from_file.read_unpoisoned()
    }

    fn reload_if_changed(&self) -> Result<(), TenantError> {
        let stamp = std::fs::metadata(&self.file)
            .ok()
            .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
        if stamp == self.read_file_keys().stamp {
            return Ok(());
        }
        let keys = read_keys_at(&self.file)?
            .into_iter()
            .filter(|record| record.revoked.is_none())
            .map(|record| (record.hash, record.tenant))
            .collect();
        *self.from_file.write_unpoisoned() = FileKeys { stamp, keys };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::tenants::{add_key, revoke_keys, rotate_key, Revoke};

    fn settings() -> Settings {
        Settings::load(None).unwrap()
    }

    #[test]
    fn a_revoked_key_is_refused_at_once_and_the_rotated_one_works() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings();
        let keys = ApiKeys::load(&settings.tenants, dir.path()).unwrap();
        let old = add_key(dir.path(), "acme").unwrap();
        assert_eq!(keys.tenant_for(&old.key).as_deref(), Some("acme"));

        let rotation = rotate_key(dir.path(), &settings.tenants, "acme").unwrap();
        assert_eq!(rotation.previous, vec![old.id.clone()]);
        assert_eq!(keys.tenant_for(&old.key).as_deref(), Some("acme"));
        assert_eq!(
            keys.tenant_for(&rotation.issued.key).as_deref(),
            Some("acme")
        );

        let revocation = revoke_keys(
            dir.path(),
            &settings.tenants,
            "acme",
            &Revoke::Key(old.id),
            false,
        )
        .unwrap();
        assert_eq!(revocation.remaining, vec![rotation.issued.id.clone()]);
        assert_eq!(keys.tenant_for(&old.key), None);
        assert_eq!(
            keys.tenant_for(&rotation.issued.key).as_deref(),
            Some("acme")
        );
        assert!(keys.has_tenant("acme"));
    }
}
