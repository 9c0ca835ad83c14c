//! Tenants and their API keys. Keys are stored only as SHA-256 hashes: in the settings, or
//! in `<store dir>/api-keys` (one `<tenant> <hash> id=<key id> created=<time> [revoked=<time>]`
//! line per key, written atomically by `otpd tenant add|rotate|revoke`). The running server
//! checks that file on every lookup, so a revoked key is refused from the next request on.

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::access::TenantSettings;
use crate::config::Settings;
use crate::domain::is_name;
use crate::domain::Timestamp;

/// The tenant created on a first start with no tenant configured.
pub const DEV_TENANT: &str = "dev";

/// How long an edit waits for another one in progress to finish.
const LOCK_WAIT: Duration = Duration::from_secs(5);

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

/// The id of a key known only by its hash (settings, or a keys-file line from before ids):
/// `key_` and the hash's first 8 hex digits.
pub fn id_from_hash(hash: &KeyHash) -> String {
    format!("key_{}", hex::encode(&hash[..4]))
}

fn random_id() -> String {
    let mut bytes = [0u8; 4];
    OsRng.fill_bytes(&mut bytes);
    format!("key_{}", hex::encode(bytes))
}

pub fn keys_file(store_dir: &Path) -> PathBuf {
    store_dir.join("api-keys")
}

/// One line of the keys file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub tenant: String,
    pub hash: KeyHash,
    /// Short and not secret: names the key in `otpd tenant list` and `revoke`.
    pub id: String,
    /// Unknown for lines written before keys had ids.
    pub created: Option<Timestamp>,
    pub revoked: Option<Timestamp>,
}

/// A key just made: shown once, never stored.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub id: String,
    pub key: String,
}

/// Parses the keys file; the error is the first bad line's number. Lines of two columns
/// (`<tenant> <hash>`, from before keys had ids) get their id from the hash.
pub fn parse_keys_file(text: &str) -> Result<Vec<KeyRecord>, usize> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        records.push(parse_line(line).ok_or(index + 1)?);
    }
    Ok(records)
}

fn parse_line(line: &str) -> Option<KeyRecord> {
    let mut parts = line.split_whitespace();
    let tenant = parts.next().filter(|t| is_name(t))?;
    let hash: KeyHash = hex::decode(parts.next()?).ok()?.try_into().ok()?;
    let mut record = KeyRecord {
        tenant: tenant.to_owned(),
        id: id_from_hash(&hash),
        hash,
        created: None,
        revoked: None,
    };
    for field in parts {
        let (name, value) = field.split_once('=')?;
        match name {
            "id" if is_key_id(value) => record.id = value.to_owned(),
            "created" => record.created = Some(parse_time(value)?),
            "revoked" => record.revoked = Some(parse_time(value)?),
            _ => return None,
        }
    }
    Some(record)
}

fn is_key_id(value: &str) -> bool {
    value
        .strip_prefix("key_")
        .is_some_and(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn parse_time(value: &str) -> Option<Timestamp> {
    let time = humantime::parse_rfc3339(value).ok()?;
    let millis = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some(Timestamp(millis as u64))
}

fn render_keys_file(records: &[KeyRecord]) -> String {
    let mut text = String::from(
        "# otpd API keys: <tenant> <sha256 of the key> id= created= [revoked=]. Edit with `otpd tenant`.\n",
    );
    for record in records {
        let _ = write!(text, "{} {}", record.tenant, hex::encode(record.hash));
        let _ = write!(text, " id={}", record.id);
        if let Some(created) = record.created {
            let _ = write!(text, " created={}", created.to_rfc3339());
        }
        if let Some(revoked) = record.revoked {
            let _ = write!(text, " revoked={}", revoked.to_rfc3339());
        }
        text.push('\n');
    }
    text
}

/// Reads the keys file (none yet: no records).
pub fn read_keys(store_dir: &Path) -> Result<Vec<KeyRecord>, TenantError> {
    read_keys_at(&keys_file(store_dir))
}

/// The keys in the keys file at `path`; none when there is no such file.
fn read_keys_at(path: &Path) -> Result<Vec<KeyRecord>, TenantError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(TenantError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse_keys_file(&text).map_err(|line| TenantError::Malformed {
        path: path.to_path_buf(),
        line,
    })
}

/// Changes the keys file under an exclusive temp file (`api-keys.tmp`, mode 0600), then
/// fsyncs it and renames it over the file: readers see the old file or the new one, whole.
fn edit_keys<T>(
    store_dir: &Path,
    change: impl FnOnce(&mut Vec<KeyRecord>) -> Result<T, TenantError>,
) -> Result<T, TenantError> {
    let path = keys_file(store_dir);
    let temp_path = store_dir.join("api-keys.tmp");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TenantError::Io { path, source }
    };
    std::fs::create_dir_all(store_dir).map_err(io(store_dir))?;
    let started = Instant::now();
    let mut temp = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp_path)
        {
            Ok(file) => break file,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                if started.elapsed() > LOCK_WAIT {
                    return Err(TenantError::Busy { path: temp_path });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => return Err(io(&temp_path)(source)),
        }
    };
    let written = (|| {
        let mut records = read_keys(store_dir)?;
        let answer = change(&mut records)?;
        temp.write_all(render_keys_file(&records).as_bytes())
            .map_err(io(&temp_path))?;
        temp.sync_all().map_err(io(&temp_path))?;
        std::fs::rename(&temp_path, &path).map_err(io(&path))?;
        std::fs::File::open(store_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(store_dir))?;
        Ok(answer)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp_path);
    }
    written
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

fn tenant_exists(records: &[KeyRecord], settings: &Settings, tenant: &str) -> bool {
    settings.tenants.contains_key(tenant) || records.iter().any(|r| r.tenant == tenant)
}

/// Adds a key to an existing tenant. Its other keys stay valid until revoked, so clients
/// can move to the new one without downtime.
pub fn rotate_key(
    store_dir: &Path,
    settings: &Settings,
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
fn active_ids(records: &[KeyRecord], settings: &Settings, tenant: &str) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| r.tenant == tenant && r.revoked.is_none())
        .map(|r| r.id.clone())
        .collect();
    ids.extend(settings_key_ids(settings, tenant));
    ids
}

fn settings_key_ids(settings: &Settings, tenant: &str) -> Vec<String> {
    settings
        .tenants
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
    settings: &Settings,
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
    settings: &Settings,
) -> Result<Vec<TenantListing>, TenantError> {
    let records = read_keys(store_dir)?;
    let mut tenants: BTreeMap<String, Vec<KeyListing>> = BTreeMap::new();
    for name in settings.tenants.keys() {
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
            settings: settings.tenants.get(&name).cloned().unwrap_or_default(),
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
        list(settings.channels.iter().map(|c| c.to_string()).collect(), "none"),
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

    fn refresh(&self) {
        if let Err(error) = self.reload_if_changed() {
            tracing::warn!(%error, "Could not re-read the API keys file; the keys read before stay in use.");
        }
    }

    fn read_file_keys(&self) -> std::sync::RwLockReadGuard<'_, FileKeys> {
        self.from_file.read().unwrap_or_else(|p| p.into_inner())
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
        *self.from_file.write().unwrap_or_else(|p| p.into_inner()) = FileKeys { stamp, keys };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::load(None).unwrap()
    }

    #[test]
    fn added_keys_are_found_and_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ApiKeys::load(&settings(), dir.path()).unwrap();
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
    fn bootstraps_dev_once() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings();
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
        let hash = "ab".repeat(32);
        assert_eq!(parse_keys_file(&format!("acme {hash} colour=blue")), Err(1));
    }

    #[test]
    fn reads_two_column_lines_with_an_id_from_the_hash() {
        let hash = "0123abcd".repeat(8);
        let records = parse_keys_file(&format!("acme {hash}\n")).unwrap();
        assert_eq!(records[0].id, "key_0123abcd");
        assert_eq!(records[0].created, None);
        assert_eq!(records[0].revoked, None);
    }

    #[test]
    fn lines_round_trip() {
        let record = KeyRecord {
            tenant: "acme".into(),
            hash: [7; 32],
            id: "key_00ff00ff".into(),
            created: Some(Timestamp::from_secs(1_795_780_800)),
            revoked: Some(Timestamp::from_secs(1_795_790_800)),
        };
        let text = render_keys_file(std::slice::from_ref(&record));
        assert_eq!(parse_keys_file(&text).unwrap(), vec![record]);
    }

    #[test]
    fn a_revoked_key_is_refused_at_once_and_the_rotated_one_works() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings();
        let keys = ApiKeys::load(&settings, dir.path()).unwrap();
        let old = add_key(dir.path(), "acme").unwrap();
        assert_eq!(keys.tenant_for(&old.key).as_deref(), Some("acme"));

        let rotation = rotate_key(dir.path(), &settings, "acme").unwrap();
        assert_eq!(rotation.previous, vec![old.id.clone()]);
        assert_eq!(keys.tenant_for(&old.key).as_deref(), Some("acme"));
        assert_eq!(
            keys.tenant_for(&rotation.issued.key).as_deref(),
            Some("acme")
        );

        let revocation =
            revoke_keys(dir.path(), &settings, "acme", &Revoke::Key(old.id), false).unwrap();
        assert_eq!(revocation.remaining, vec![rotation.issued.id.clone()]);
        assert_eq!(keys.tenant_for(&old.key), None);
        assert_eq!(
            keys.tenant_for(&rotation.issued.key).as_deref(),
            Some("acme")
        );
        assert!(keys.has_tenant("acme"));
    }

    #[test]
    fn the_last_key_needs_force_and_all_revokes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings();
        let only = add_key(dir.path(), "acme").unwrap();
        let refused = revoke_keys(
            dir.path(),
            &settings,
            "acme",
            &Revoke::Key(only.id.clone()),
            false,
        );
        assert!(
            matches!(refused, Err(TenantError::LastKey { .. })),
            "{refused:?}"
        );
        let keys = ApiKeys::load(&settings, dir.path()).unwrap();
        assert_eq!(keys.tenant_for(&only.key).as_deref(), Some("acme"));

        add_key(dir.path(), "acme").unwrap();
        let all = revoke_keys(dir.path(), &settings, "acme", &Revoke::All, false).unwrap();
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
            rotate_key(dir.path(), &settings, "ghost"),
            Err(TenantError::UnknownTenant(_))
        ));
        let issued = add_key(dir.path(), "acme").unwrap();
        let error = revoke_keys(
            dir.path(),
            &settings,
            "acme",
            &Revoke::Key("key_00000000".into()),
            false,
        )
        .unwrap_err();
        assert!(error.to_string().contains(&issued.id), "{error}");
        revoke_keys(
            dir.path(),
            &settings,
            "acme",
            &Revoke::Key(issued.id.clone()),
            true,
        )
        .unwrap();
        let again = revoke_keys(dir.path(), &settings, "acme", &Revoke::Key(issued.id), true);
        assert!(matches!(again, Err(TenantError::AlreadyRevoked { .. })));
    }

    #[test]
    fn an_edit_in_progress_is_waited_for_then_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-keys.tmp"), b"").unwrap();
        let busy = add_key(dir.path(), "acme");
        assert!(matches!(busy, Err(TenantError::Busy { .. })), "{busy:?}");
        assert!(dir.path().join("api-keys.tmp").exists());
    }
}
