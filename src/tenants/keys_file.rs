//! The keys file `<store dir>/api-keys`: its line format, and edits that replace it whole
//! under a lock file.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::TenantError;
use crate::domain::is_name;
use crate::domain::Timestamp;

/// How long an edit waits for another one in progress to finish.
const LOCK_WAIT: Duration = Duration::from_secs(5);

pub(super) type KeyHash = [u8; 32];

/// SHA-256 of a presented key.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// The id of a key known only by its hash (settings, or a keys-file line from before ids):
/// `key_` and the hash's first 8 hex digits.
pub fn id_from_hash(hash: &KeyHash) -> String {
    format!("key_{}", hex::encode(&hash[..4]))
}

/// Where the keys file of a store directory is.
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
pub(super) fn read_keys_at(path: &Path) -> Result<Vec<KeyRecord>, TenantError> {
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
pub(super) fn edit_keys<T>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::add_key;

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
    fn an_edit_in_progress_is_waited_for_then_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-keys.tmp"), b"").unwrap();
        let busy = add_key(dir.path(), "acme");
        assert!(matches!(busy, Err(TenantError::Busy { .. })), "{busy:?}");
        assert!(dir.path().join("api-keys.tmp").exists());
    }
}
