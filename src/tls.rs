//! TLS settings (HTTPS listener, amqps:// trust), their PEM files and the rustls configs built from them.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::version::{TLS12, TLS13};
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The protocol versions the HTTPS listener accepts: TLS 1.3 and 1.2, nothing older.
pub const HTTP_TLS_VERSIONS: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];

/// `[http.tls]`: HTTPS for the API. Both files, or neither (plain HTTP).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTlsSettings {
    /// PEM file with the server certificate first, then its intermediates. Set together with
    /// `key_file` to serve HTTPS (TLS 1.2 and 1.3 only). Default unset: plain HTTP.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1). Default unset.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[amqp.tls]`: how an `amqps://` broker is trusted, and how otpd proves itself to a broker
/// that asks for a client certificate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpTlsSettings {
    /// PEM bundle of CA certificates trusted for the broker's certificate, besides the system's
    /// trust store (for a private CA). Only with an `amqps://` URL. Default unset: the system's
    /// trust store alone.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (then its intermediates) for a broker that requires one (mutual
    /// TLS); set together with `key_file`. Default unset: no client certificate.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1). Default unset.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// What an `amqps://` connection uses, read from `[amqp.tls]`.
#[derive(Debug, Clone, Default)]
pub struct AmqpTls {
    /// PEM text of `ca_file`: CA certificates trusted besides the system's.
    pub ca_pem: Option<String>,
    /// PEM texts of `cert_file` and `key_file`.
    pub client: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, both PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A TLS file that cannot be used, or settings that do not fit together.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting}: cannot read {path}: {source}; point {setting} at a readable PEM file")]
    Unreadable {
        setting: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{setting}: {path} holds no {what}; give a PEM file with {what} in it")]
    NoPem {
        setting: String,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{setting}: {path} is not usable: {reason}")]
    Rejected {
        setting: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Settings(String),
}

/// Reads `path` as PEM certificates; at least one.
pub fn read_certificates(
    setting: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(setting, path)?;
    certificates_in(setting, path, &pem)
}

/// Reads `path` as a PEM CA bundle: its text (for clients that take PEM) after checking that
/// every certificate in it is usable as a trust anchor.
pub fn read_ca_bundle(setting: &str, path: &Path) -> Result<String, TlsError> {
    let pem = read(setting, path)?;
    add_trust_anchors(&mut RootCertStore::empty(), setting, path, &pem)?;
    String::from_utf8(pem).map_err(|_| TlsError::Rejected {
        setting: setting.to_owned(),
        path: path.to_owned(),
        reason: "it is not text; give the CA certificates in PEM".into(),
    })
}

/// Adds every certificate of `pem` (read from `path`, setting `setting`) to `roots`; one that
/// cannot be a trust anchor is refused, named.
fn add_trust_anchors(
    roots: &mut RootCertStore,
    setting: &str,
    path: &Path,
    pem: &[u8],
) -> Result<(), TlsError> {
    for certificate in certificates_in(setting, path, pem)? {
        roots.add(certificate).map_err(|error| TlsError::Rejected {
            setting: setting.to_owned(),
            path: path.to_owned(),
            reason: format!("a certificate in it cannot be a trust anchor ({error})"),
        })?;
    }
    Ok(())
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        setting: setting.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn certificates_in(
    setting: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Rejected {
            setting: setting.to_owned(),
            path: path.to_owned(),
            reason: format!("its PEM does not parse ({error})"),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoPem {
            setting: setting.to_owned(),
            path: path.to_owned(),
            what: "'-----BEGIN CERTIFICATE-----' block",
        });
    }
    Ok(certificates)
}

fn read_private_key(setting: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(setting, path)?;
    private_key_in(setting, path, &pem)
}

fn private_key_in(
    setting: &str,
    path: &Path,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPem {
            setting: setting.to_owned(),
            path: path.to_owned(),
            what: "private key ('-----BEGIN PRIVATE KEY-----' or RSA/EC key block)",
        },
        error => TlsError::Rejected {
            setting: setting.to_owned(),
            path: path.to_owned(),
            reason: format!("its PEM does not parse ({error})"),
        },
    })
}

/// The crypto every rustls configuration of otpd is built with.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client's configuration that trusts the public CAs (Mozilla's, as webpki-roots
/// carries them) and those of `ca_file` (setting `setting`), TLS 1.2 and 1.3.
pub fn client_config(
    setting: &str,
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        add_trust_anchors(&mut roots, setting, path, &read(setting, path)?)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Settings(format!("{setting}: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The HTTPS listener's configuration, or `None` when `[http.tls]` is not set.
pub fn server_config(tls: &HttpTlsSettings) -> Result<Option<ServerConfig>, TlsError> {
    let (cert_file, key_file) = match (&tls.cert_file, &tls.key_file) {
        (None, None) => return Ok(None),
        (Some(cert_file), Some(key_file)) => (cert_file, key_file),
        _ => return Err(TlsError::Settings(
            "http.tls: set both cert_file and key_file to serve HTTPS, or neither for plain HTTP"
                .into(),
        )),
    };
    let certificates = read_certificates("http.tls.cert_file", cert_file)?;
    let key = read_private_key("http.tls.key_file", key_file)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(HTTP_TLS_VERSIONS)
        .map_err(|error| TlsError::Settings(format!("http.tls: {error}")))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|error| TlsError::Rejected {
            setting: "http.tls.key_file".into(),
            path: key_file.clone(),
            reason: format!(
                "rustls refused it with the certificate of http.tls.cert_file ({error}); give the private key of that certificate"
            ),
        })?;
    Ok(Some(config))
}

/// Reads `[amqp.tls]`: the CA bundle and the client identity, each checked.
pub fn amqp_tls(tls: &AmqpTlsSettings) -> Result<AmqpTls, TlsError> {
    let ca_pem = tls
        .ca_file
        .as_deref()
        .map(|path| read_ca_bundle("amqp.tls.ca_file", path))
        .transpose()?;
    let client = match (&tls.cert_file, &tls.key_file) {
        (None, None) => None,
        (Some(cert_file), Some(key_file)) => {
            let cert_pem = read("amqp.tls.cert_file", cert_file)?;
            let key_pem = read("amqp.tls.key_file", key_file)?;
            let certificates = certificates_in("amqp.tls.cert_file", cert_file, &cert_pem)?;
            let key = private_key_in("amqp.tls.key_file", key_file, &key_pem)?;
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|error| TlsError::Settings(format!("amqp.tls: {error}")))?
                .with_root_certificates(RootCertStore::empty())
                .with_client_auth_cert(certificates, key)
                .map_err(|error| TlsError::Rejected {
                    setting: "amqp.tls.key_file".into(),
                    path: key_file.clone(),
                    reason: format!(
                        "rustls refused it with the certificate of amqp.tls.cert_file ({error}); give the private key of that certificate"
                    ),
                })?;
            Some(ClientIdentity { cert_pem, key_pem })
        }
        _ => {
            return Err(TlsError::Settings(
                "amqp.tls: set both cert_file and key_file for a client certificate, or neither"
                    .into(),
            ))
        }
    };
    Ok(AmqpTls { ca_pem, client })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn self_signed() -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (certified.cert.pem(), certified.key_pair.serialize_pem())
    }

    #[test]
    fn no_files_means_plain_http() {
        assert!(server_config(&HttpTlsSettings::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_certificate_and_its_key_make_a_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let tls = HttpTlsSettings {
            cert_file: Some(write(dir.path(), "cert.pem", &cert)),
            key_file: Some(write(dir.path(), "key.pem", &key)),
        };
        let config = server_config(&tls).unwrap().expect("a server config");
        assert!(
            config.alpn_protocols.is_empty(),
            "actix adds http/1.1 itself"
        );
        let versions: Vec<_> = HTTP_TLS_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(
            versions,
            [
                rustls::ProtocolVersion::TLSv1_3,
                rustls::ProtocolVersion::TLSv1_2
            ]
        );
    }

    #[test]
    fn one_file_without_the_other_is_refused() {
        let tls = HttpTlsSettings {
            cert_file: Some("cert.pem".into()),
            key_file: None,
        };
        let error = server_config(&tls).unwrap_err().to_string();
        assert!(error.contains("set both cert_file and key_file"), "{error}");
    }

    #[test]
    fn each_file_problem_names_the_setting_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let (other_cert, _) = self_signed();
        let cert_file = write(dir.path(), "cert.pem", &cert);
        let key_file = write(dir.path(), "key.pem", &key);
        let garbage = write(dir.path(), "garbage.pem", "not a pem file\n");
        let other = write(dir.path(), "other.pem", &other_cert);
        let missing = dir.path().join("missing.pem");
        let cases = [
            (
                missing.clone(),
                key_file.clone(),
                "http.tls.cert_file: cannot read",
            ),
            (garbage.clone(), key_file.clone(), "http.tls.cert_file"),
            (cert_file.clone(), garbage.clone(), "http.tls.key_file"),
            (
                cert_file.clone(),
                missing.clone(),
                "http.tls.key_file: cannot read",
            ),
            (
                other.clone(),
                key_file.clone(),
                "give the private key of that certificate",
            ),
        ];
        for (cert_file, key_file, expected) in cases {
            let tls = HttpTlsSettings {
                cert_file: Some(cert_file.clone()),
                key_file: Some(key_file.clone()),
            };
            let error = server_config(&tls).unwrap_err().to_string();
            assert!(error.contains(expected), "'{expected}' not in: {error}");
            assert!(
                error.contains(&cert_file.display().to_string())
                    || error.contains(&key_file.display().to_string()),
                "no path in: {error}"
            );
        }
    }

    #[test]
    fn a_ca_bundle_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let good = write(dir.path(), "ca.pem", &cert);
        let key_only = write(dir.path(), "key.pem", &key);
        let tls = |path: &Path| AmqpTlsSettings {
            ca_file: Some(path.to_owned()),
            ..AmqpTlsSettings::default()
        };
        let read = amqp_tls(&tls(&good)).unwrap();
        assert_eq!(read.ca_pem.as_deref(), Some(cert.as_str()));
        assert!(read.client.is_none());
        let error = amqp_tls(&tls(&key_only)).unwrap_err().to_string();
        assert!(error.contains("amqp.tls.ca_file"), "{error}");
        assert!(error.contains("BEGIN CERTIFICATE"), "{error}");
        let error = amqp_tls(&tls(&dir.path().join("nope.pem")))
            .unwrap_err()
            .to_string();
        assert!(error.contains("amqp.tls.ca_file: cannot read"), "{error}");
        let none = amqp_tls(&AmqpTlsSettings::default()).unwrap();
        assert!(none.ca_pem.is_none() && none.client.is_none());
    }

    #[test]
    fn a_client_identity_needs_both_files_and_a_matching_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        let cert_file = write(dir.path(), "cert.pem", &cert);
        let key_file = write(dir.path(), "key.pem", &key);
        let other_key = write(dir.path(), "other.pem", &other_key);
        let tls = |cert: Option<&Path>, key: Option<&Path>| AmqpTlsSettings {
            ca_file: None,
            cert_file: cert.map(Path::to_owned),
            key_file: key.map(Path::to_owned),
        };
        let client = amqp_tls(&tls(Some(&cert_file), Some(&key_file)))
            .unwrap()
            .client
            .expect("a client identity");
        assert_eq!(client.cert_pem, cert.as_bytes());
        assert!(!format!("{client:?}").contains("PRIVATE KEY"));
        let error = amqp_tls(&tls(Some(&cert_file), None))
            .unwrap_err()
            .to_string();
        assert!(error.contains("set both cert_file and key_file"), "{error}");
        let error = amqp_tls(&tls(Some(&cert_file), Some(&other_key)))
            .unwrap_err()
            .to_string();
        assert!(error.contains("amqp.tls.key_file"), "{error}");
        assert!(
            error.contains("give the private key of that certificate"),
            "{error}"
        );
    }
}
