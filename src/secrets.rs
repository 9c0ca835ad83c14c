//! The server's secrets: the HMAC pepper and the key that seals codes in delivery jobs.
//! They come from the environment or files; in embedded mode missing ones are generated once.

use crate::domain::random::OsRandom;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::domain::{CodeHasher, JobId, OtpCode};

const KEY_BYTES: usize = 32;

/// `[secrets]`: where the pepper and the sealing key come from.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSettings {
    /// HMAC pepper, hex. Default unset.
    pub pepper: Option<SecretString>,
    /// File holding the HMAC pepper in hex. Default unset.
    pub pepper_file: Option<PathBuf>,
    /// Key that seals codes in delivery jobs, 32 bytes in hex. Default unset.
    pub sealing_key: Option<SecretString>,
    /// File holding the sealing key in hex. Default unset.
    pub sealing_key_file: Option<PathBuf>,
}
const NONCE_BYTES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{name}: could not read {path}: {source}")]
    Read {
        name: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name}: could not write the generated secret to {path}: {source}")]
    Write {
        name: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} is not set: give it as OTPD__{env} (hex) or in the file named by {name}_file; broker mode does not generate secrets, because every node must share them", env = name.trim_start_matches("secrets.").to_uppercase().replace('.', "__").replace("PEPPER", "SECRETS__PEPPER").replace("SEALING_KEY", "SECRETS__SEALING_KEY"))]
    Missing { name: &'static str },
    #[error("{name} must be {KEY_BYTES} bytes written as {} hex digits", KEY_BYTES * 2)]
    Malformed { name: &'static str },
}

/// Seals a code for a delivery job (ChaCha20-Poly1305, the job id as associated data), so a
/// queue or outbox never holds it in clear, and a sealed code cannot be moved to another job.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

/// A sealed code that does not open: wrong key, another job's code, or damaged bytes.
#[derive(Debug, thiserror::Error)]
#[error("the sealed code of {0} does not open with this node's sealing key")]
pub struct UnsealError(pub String);

impl Sealer {
    pub fn new(key: &SecretSlice<u8>) -> Self {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key.expose_secret())),
        }
    }

    /// Seals a job's code; only the same job's id opens it.
    pub fn seal(&self, job: &JobId, code: &OtpCode) -> Vec<u8> {
        self.seal_bound(job.as_str(), code)
    }

    pub fn open(&self, job: &JobId, sealed: &[u8]) -> Result<OtpCode, UnsealError> {
        self.open_bound(job.as_str(), sealed)
    }

    /// Seals a code so that it opens only with the same `bound_to` (a job id, or a
    /// forwarded check's correlation).
    pub fn seal_bound(&self, bound_to: &str, code: &OtpCode) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRandom.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: code.reveal().as_bytes(),
            aad: bound_to.as_bytes(),
        };
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("ChaCha20-Poly1305 encrypts any message of a code's size");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open_bound(&self, bound_to: &str, sealed: &[u8]) -> Result<OtpCode, UnsealError> {
        let fail = || UnsealError(bound_to.to_owned());
        if sealed.len() < NONCE_BYTES {
            return Err(fail());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: ciphertext,
            aad: bound_to.as_bytes(),
        };
        let clear = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| fail())?;
        let text = String::from_utf8(clear).map_err(|_| fail())?;
        OtpCode::parse(&text).ok_or_else(fail)
    }
}

/// What the engine needs of its secrets.
#[derive(Clone)]
pub struct Secrets {
    pub hasher: CodeHasher,
    pub sealer: Sealer,
}

impl Secrets {
    /// Reads the pepper and sealing key from the settings (environment) or their files; when
    /// `generate_missing` (embedded mode), creates missing ones in `<store dir>/secrets/`.
    pub fn load(
        settings: &SecretSettings,
        store_dir: &Path,
        generate_missing: bool,
    ) -> Result<Secrets, SecretError> {
        let generated_dir = store_dir.join("secrets");
        let pepper = resolve(
            "secrets.pepper",
            settings.pepper.as_ref(),
            settings.pepper_file.as_deref(),
            &generated_dir.join("pepper"),
            generate_missing,
        )?;
        let sealing_key = resolve(
            "secrets.sealing_key",
            settings.sealing_key.as_ref(),
            settings.sealing_key_file.as_deref(),
            &generated_dir.join("sealing-key"),
            generate_missing,
        )?;
        Ok(Secrets {
            hasher: CodeHasher::new(pepper),
            sealer: Sealer::new(&sealing_key),
        })
    }
}

fn resolve(
    name: &'static str,
    inline: Option<&SecretString>,
    file: Option<&Path>,
    generated: &Path,
    generate_missing: bool,
) -> Result<SecretSlice<u8>, SecretError> {
    if let Some(value) = inline {
        return decode(name, value.expose_secret());
    }
    if let Some(path) = file {
        return read_hex_file(name, path);
    }
    if generated.exists() {
        return read_hex_file(name, generated);
    }
    if !generate_missing {
        return Err(SecretError::Missing { name });
    }
    let mut key = vec![0u8; KEY_BYTES];
    OsRng.fill_bytes(&mut key);
    write_private_file(generated, hex::encode(&key).as_bytes()).map_err(|source| {
        SecretError::Write {
            name,
            path: generated.to_owned(),
            source,
        }
    })?;
    tracing::info!(path = %generated.display(), secret = name, "Generated a missing secret.");
    Ok(SecretSlice::from(key))
}

fn read_hex_file(name: &'static str, path: &Path) -> Result<SecretSlice<u8>, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        name,
        path: path.to_owned(),
        source,
    })?;
    decode(name, &text)
}

fn decode(name: &'static str, text: &str) -> Result<SecretSlice<u8>, SecretError> {
    let bytes = hex::decode(text.trim()).map_err(|_| SecretError::Malformed { name })?;
    if bytes.len() != KEY_BYTES {
        return Err(SecretError::Malformed { name });
    }
    Ok(SecretSlice::from(bytes))
}

/// Creates `path` (and its directory) readable by the owner only, and writes `contents`.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::VerificationId;

    fn sealer() -> Sealer {
        Sealer::new(&SecretSlice::from(vec![9u8; KEY_BYTES]))
    }

    #[test]
    fn sealed_code_opens_for_its_job_only() {
        let verification = VerificationId::generate();
        let job = JobId::new(&verification, 1);
        let other = JobId::new(&verification, 2);
        let code = OtpCode::parse("424242").unwrap();
        let sealed = sealer().seal(&job, &code);
        assert!(!String::from_utf8_lossy(&sealed).contains("424242"));
        assert_eq!(sealer().open(&job, &sealed).unwrap(), code);
        assert!(sealer().open(&other, &sealed).is_err());
    }

    #[test]
    fn damaged_seal_does_not_open() {
        let job = JobId::new(&VerificationId::generate(), 1);
        let mut sealed = sealer().seal(&job, &OtpCode::parse("123456").unwrap());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(sealer().open(&job, &sealed).is_err());
        assert!(sealer().open(&job, &[1, 2, 3]).is_err());
    }

    #[test]
    fn generates_missing_secrets_once_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let settings = SecretSettings::default();
        let first = Secrets::load(&settings, dir.path(), true).unwrap();
        let mode = std::fs::metadata(dir.path().join("secrets/pepper"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = Secrets::load(&settings, dir.path(), true).unwrap();
        let code = OtpCode::parse("123456").unwrap();
        assert!(first
            .hasher
            .hash("ver_x", &code)
            .matches(&second.hasher.hash("ver_x", &code)));
    }

    #[test]
    fn refuses_to_run_without_secrets_when_not_generating() {
        let dir = tempfile::tempdir().unwrap();
        let error = Secrets::load(&SecretSettings::default(), dir.path(), false)
            .err()
            .unwrap();
        assert!(error.to_string().contains("secrets.pepper"));
    }

    #[test]
    fn refuses_short_keys() {
        let error = decode("secrets.sealing_key", "abcd").unwrap_err();
        assert!(error.to_string().contains("64 hex digits"));
    }
}
