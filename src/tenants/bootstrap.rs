//! The first start: tenant `dev` and its key, when no tenant is configured anywhere.

use std::path::{Path, PathBuf};

use super::{add_key, keys_file, TenantError};
use crate::access::Tenants;

/// The tenant created on a first start with no tenant configured.
pub const DEV_TENANT: &str = "dev";

/// On a first start with no tenant anywhere, creates tenant `dev` and writes its key to
/// `<store dir>/dev-api-key` (mode 0600). Returns that path when it did.
pub fn bootstrap_dev_tenant(
    settings: &Tenants,
    store_dir: &Path,
) -> Result<Option<PathBuf>, TenantError> {
    let path = keys_file(store_dir);
    let has_file_keys = std::fs::metadata(&path)
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    if !settings.is_empty() || has_file_keys {
        return Ok(None);
    }
    let issued = add_key(store_dir, DEV_TENANT)?;
    let key_path = store_dir.join("dev-api-key");
    let _ = std::fs::remove_file(&key_path);
    crate::secrets::write_private_file(&key_path, format!("{}\n", issued.key).as_bytes()).map_err(
        |source| TenantError::Io {
            path: key_path.clone(),
            source,
        },
    )?;
    Ok(Some(key_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::tenants::ApiKeys;

    fn settings() -> Settings {
        Settings::load(None).unwrap()
    }

    #[test]
    fn bootstraps_dev_once() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings();
        let path = bootstrap_dev_tenant(&settings.tenants, dir.path())
            .unwrap()
            .unwrap();
        let key = std::fs::read_to_string(&path).unwrap();
        let keys = ApiKeys::load(&settings.tenants, dir.path()).unwrap();
        assert_eq!(keys.tenant_for(key.trim()).as_deref(), Some(DEV_TENANT));
        assert!(bootstrap_dev_tenant(&settings.tenants, dir.path())
            .unwrap()
            .is_none());
    }
}
