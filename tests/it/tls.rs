//! TLS everywhere: HTTPS at TLS 1.2 and 1.3 only, clear start failures for bad TLS files, amqps:// (and mutual TLS) through a TLS proxy in front of RabbitMQ, SMTP over TLS; certificates from a private CA made here.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::amqp::Broker;
use crate::helpers::*;
use otpd::app::Application;
use otpd::config::Settings;
use otpd::domain::{Channel, JobId, VerificationId};
use otpd::providers::smtp::{SmtpConfig, SmtpProvider, SmtpTls};
use otpd::providers::{OutboundMessage, Provider};
use otpd::testing::fakes::FakeSmtpServer;
use otpd::tls::HttpTlsSettings;

const WAIT: Duration = Duration::from_secs(15);
const RABBITMQ: &str = "127.0.0.1:5672";

/// A private CA, a server certificate it signed for localhost and 127.0.0.1 and a client
/// certificate it signed, as PEM files in a temp dir.
struct Pki {
    dir: TempDir,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "otpd test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign the CA");
        let key = KeyPair::generate().expect("server key");
        let mut server =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = server
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("sign the server certificate");
        let client_key = KeyPair::generate().expect("client key");
        let mut client = CertificateParams::new(Vec::<String>::new()).expect("client params");
        client.distinguished_name.push(DnType::CommonName, "otpd");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client
            .signed_by(&client_key, &ca_cert, &ca_key)
            .expect("sign the client certificate");
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
            ca_pem: ca_cert.pem(),
            // The chain as a server sends it: its own certificate, then the CA's.
            cert_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(pki.ca_file(), &pki.ca_pem).unwrap();
        std::fs::write(pki.cert_file(), &pki.cert_pem).unwrap();
        std::fs::write(pki.key_file(), &pki.key_pem).unwrap();
        std::fs::write(pki.client_cert_file(), client_cert.pem()).unwrap();
        std::fs::write(pki.client_key_file(), client_key.serialize_pem()).unwrap();
        pki
    }

    fn client_cert_file(&self) -> PathBuf {
        self.dir.path().join("client-cert.pem")
    }

    fn client_key_file(&self) -> PathBuf {
        self.dir.path().join("client-key.pem")
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(certificate.unwrap()).unwrap();
        }
        roots
    }

    /// Like `server_config`, but requiring a client certificate this CA signed.
    fn mutual_server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()),
            Arc::clone(&provider),
        )
        .build()
        .unwrap();
        let certificates = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certificates, key)
            .unwrap();
        Arc::new(config)
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn http_tls(&self) -> HttpTlsSettings {
        HttpTlsSettings {
            cert_file: Some(self.cert_file()),
            key_file: Some(self.key_file()),
        }
    }

    /// A server config for the test's own TLS servers (proxy, SMTP sink).
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let certificates = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .unwrap();
        Arc::new(config)
    }

    /// A client that trusts only this CA and speaks only `version`.
    fn client(&self, version: &'static SupportedProtocolVersion) -> tokio_rustls::TlsConnector {
        let roots = self.roots();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

fn port_of(app: &TestApp) -> u16 {
    app.address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("the test app's port")
}

/// GET /healthz over TLS pinned to `version`: the version negotiated and the response.
async fn https_healthz(
    pki: &Pki,
    port: u16,
    version: &'static SupportedProtocolVersion,
) -> (Option<ProtocolVersion>, String) {
    https_get(pki, port, version, "/healthz", "").await
}

/// GETs `path` over TLS with `version`, with the extra header lines `headers`.
async fn https_get(
    pki: &Pki,
    port: u16,
    version: &'static SupportedProtocolVersion,
    path: &str,
    headers: &str,
) -> (Option<ProtocolVersion>, String) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(WAIT, pki.client(version).connect(name, tcp))
        .await
        .expect("the handshake finished in time")
        .expect("the TLS handshake succeeded");
    let negotiated = tls.get_ref().1.protocol_version();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut response)).await;
    (negotiated, String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test]
async fn https_serves_tls13_and_tls12() {
    let pki = Pki::new();
    let tls = pki.http_tls();
    let app = spawn_app_with(move |settings| settings.http.tls = tls).await;
    let port = port_of(&app);
    for (version, expected) in [
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let (negotiated, response) = https_healthz(&pki, port, version).await;
        assert_eq!(negotiated, Some(expected));
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{expected:?}: {response}"
        );
    }
    // The URLs otpd writes name the scheme it serves.
    let credentials = format!("{}:{}", otpd::tenants::account_sid("dev"), app.api_key);
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, credentials);
    let authorization = format!("Authorization: Basic {basic}\r\n");
    let (_, services) = https_get(
        &pki,
        port,
        &rustls::version::TLS13,
        "/v2/Services",
        &authorization,
    )
    .await;
    assert!(
        services.contains("\"url\":\"https://localhost/v2/Services/VA"),
        "{services}"
    );
    // Plain HTTP is not served on the TLS port.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status().as_u16()).ok() != Some(200),
        "plain HTTP got 200 from the HTTPS listener"
    );
}

/// A ClientHello built by hand: record and client version `version` (0x0302 is TLS 1.1,
/// 0x0303 TLS 1.2), no supported_versions extension, suites of both TLS 1.1 and 1.2.
fn client_hello(version: u16) -> Vec<u8> {
    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
        out
    }
    fn list16(items: &[u16]) -> Vec<u8> {
        let mut out = ((items.len() * 2) as u16).to_be_bytes().to_vec();
        for item in items {
            out.extend(item.to_be_bytes());
        }
        out
    }
    let host = b"localhost";
    let mut server_name = ((host.len() + 3) as u16).to_be_bytes().to_vec();
    server_name.push(0);
    server_name.extend((host.len() as u16).to_be_bytes());
    server_name.extend(host);
    let mut extensions = Vec::new();
    extensions.extend(extension(0x0000, &server_name));
    extensions.extend(extension(0x000a, &list16(&[0x001d, 0x0017]))); // x25519, P-256
    extensions.extend(extension(0x000b, &[1, 0])); // uncompressed points
    extensions.extend(extension(0x000d, &list16(&[0x0403, 0x0804, 0x0401]))); // signatures
    extensions.extend(extension(0xff01, &[0])); // renegotiation_info

    let mut body = version.to_be_bytes().to_vec();
    body.extend([0x5a; 32]); // random
    body.push(0); // no session id
    body.extend(list16(&[
        0xc02b, 0xc02f, // ECDHE-{ECDSA,RSA}-AES128-GCM-SHA256 (TLS 1.2)
        0xc009, 0xc013, // ECDHE-{ECDSA,RSA}-AES128-CBC-SHA (TLS 1.0/1.1)
        0x002f, // RSA-AES128-CBC-SHA
    ]));
    body.extend([1, 0]); // null compression only
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);

    let mut handshake = vec![1]; // client_hello
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16];
    record.extend(version.to_be_bytes());
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// Sends `hello` and returns the first record the server answers with (type and payload), or
/// `None` when it closes without answering.
async fn first_record(port: u16, hello: &[u8]) -> Option<(u8, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(hello).await.unwrap();
    let mut header = [0u8; 5];
    match tokio::time::timeout(WAIT, stream.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return None,
        Err(_) => panic!("the server neither answered nor closed within {WAIT:?}"),
    }
    let length = u16::from_be_bytes([header[3], header[4]]) as usize;
    let mut payload = vec![0u8; length];
    tokio::time::timeout(WAIT, stream.read_exact(&mut payload))
        .await
        .expect("the record arrived in time")
        .expect("the whole record");
    Some((header[0], payload))
}

#[tokio::test]
async fn https_refuses_a_tls11_client_hello() {
    let pki = Pki::new();
    let tls = pki.http_tls();
    let app = spawn_app_with(move |settings| settings.http.tls = tls).await;
    let port = port_of(&app);

    // The same hand-built hello at TLS 1.2 gets a ServerHello: the hello itself is sound.
    let (kind, payload) = first_record(port, &client_hello(0x0303))
        .await
        .expect("an answer to a TLS 1.2 ClientHello");
    assert_eq!(kind, 0x16, "a handshake record");
    assert_eq!(payload[0], 2, "a ServerHello");

    // At TLS 1.1 it gets a fatal alert (protocol_version or handshake_failure), or nothing.
    match first_record(port, &client_hello(0x0302)).await {
        None => {}
        Some((kind, payload)) => {
            assert_eq!(kind, 0x15, "an alert, not a handshake: {payload:?}");
            assert_eq!(payload[0], 2, "a fatal alert: {payload:?}");
            assert!(
                [70, 40].contains(&payload[1]),
                "protocol_version (70) or handshake_failure (40): {payload:?}"
            );
        }
    }
}

#[tokio::test]
async fn https_refuses_tls11_with_openssl_when_it_is_installed() {
    let Ok(version) = Command::new("openssl").arg("version").output() else {
        eprintln!("openssl is not installed; the hand-built ClientHello test covers TLS 1.1");
        return;
    };
    assert!(version.status.success());
    let pki = Pki::new();
    let tls = pki.http_tls();
    let app = spawn_app_with(move |settings| settings.http.tls = tls).await;
    let connect = format!("127.0.0.1:{}", port_of(&app));
    let run = |flag: &'static str| {
        let connect = connect.clone();
        let ca = pki.ca_file();
        tokio::task::spawn_blocking(move || {
            let output = Command::new("openssl")
                .args(["s_client", "-connect", &connect, "-servername", "localhost"])
                // Security level 0, so that OpenSSL itself offers TLS 1.1.
                .args([flag, "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile"])
                .arg(ca)
                .stdin(Stdio::null())
                .output()
                .expect("run openssl s_client");
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    };
    let tls12 = run("-tls1_2").await.unwrap();
    assert!(
        tls12.contains("New, TLSv1.2, Cipher is ECDHE") && tls12.contains("Verify return code: 0"),
        "openssl -tls1_2 failed: {tls12}"
    );
    let tls11 = run("-tls1_1").await.unwrap();
    assert!(
        tls11.contains("Cipher is (NONE)")
            && (tls11.contains("SSL alert number 70") || tls11.contains("SSL alert number 40")),
        "openssl -tls1_1 was not refused with a fatal alert: {tls11}"
    );
}

/// The error `Application::build` ends with, which must fail.
fn start_error(settings: Settings) -> String {
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            match Application::build(settings).await {
                Ok(_) => None,
                Err(error) => Some(error.to_string()),
            }
        })
    })
    .join()
    .expect("the start thread")
    .expect("the start must fail")
}

fn settings_in(store: &TempDir) -> Settings {
    let mut settings = Settings::load(None).expect("default settings");
    settings.http.listen = "127.0.0.1:0".into();
    settings.store.dir = store.path().to_path_buf();
    settings
}

#[test]
fn start_fails_clearly_when_the_certificate_is_missing() {
    let pki = Pki::new();
    let store = tempfile::tempdir().unwrap();
    let missing = pki.dir.path().join("missing.pem");
    let mut settings = settings_in(&store);
    settings.http.tls = HttpTlsSettings {
        cert_file: Some(missing.clone()),
        key_file: Some(pki.key_file()),
    };
    let problems = settings.validate().unwrap_err().to_string();
    let started = start_error(settings);
    for error in [problems, started] {
        assert!(error.contains("http.tls.cert_file: cannot read"), "{error}");
        assert!(error.contains(&missing.display().to_string()), "{error}");
    }
}

#[test]
fn start_fails_clearly_when_the_key_is_garbage_or_unreadable() {
    let pki = Pki::new();
    let store = tempfile::tempdir().unwrap();
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is no key\n").unwrap();
    // A directory cannot be read as a file, even by root.
    let unreadable = pki.dir.path().to_path_buf();
    for key_file in [garbage, unreadable] {
        let mut settings = settings_in(&store);
        settings.http.tls = HttpTlsSettings {
            cert_file: Some(pki.cert_file()),
            key_file: Some(key_file.clone()),
        };
        let problems = settings.validate().unwrap_err().to_string();
        let started = start_error(settings);
        for error in [problems, started] {
            assert!(error.contains("http.tls.key_file"), "{error}");
            assert!(error.contains(&key_file.display().to_string()), "{error}");
        }
    }
}

#[test]
fn a_ca_file_needs_an_amqps_url() {
    let pki = Pki::new();
    let store = tempfile::tempdir().unwrap();
    let mut settings = settings_in(&store);
    settings.amqp.url = Some("amqp://guest:guest@127.0.0.1:5672/%2f".into());
    settings.amqp.tls.ca_file = Some(pki.ca_file());
    let problems = settings.validate().unwrap_err().to_string();
    assert!(
        problems.contains("amqp.tls.ca_file is set but amqp.url is not an amqps:// URL"),
        "{problems}"
    );
    settings.amqp.url = Some("amqps://guest:guest@127.0.0.1:5671/%2f".into());
    settings.amqp.tls.ca_file = Some(pki.key_file());
    let problems = settings.validate().unwrap_err().to_string();
    assert!(problems.contains("amqp.tls.ca_file"), "{problems}");
    assert!(problems.contains("BEGIN CERTIFICATE"), "{problems}");
}

#[tokio::test]
async fn the_binary_takes_tls_files_from_the_environment() {
    let pki = Pki::new();
    let store = tempfile::tempdir().unwrap();
    let cert = pki.cert_file().display().to_string();
    let key = pki.key_file().display().to_string();
    let missing = pki.dir.path().join("nope.pem").display().to_string();

    // A missing file named by environment stops the start with the setting and the path.
    let output = Command::new(otpd_binary())
        .arg("serve")
        .env("OTPD__STORE__DIR", store.path())
        .env("OTPD__HTTP__LISTEN", "127.0.0.1:0")
        .env("OTPD__HTTP__TLS__CERT_FILE", &missing)
        .env("OTPD__HTTP__TLS__KEY_FILE", &key)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run otpd serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "otpd started: {stderr}");
    assert!(stderr.contains("http.tls.cert_file"), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");

    // Good files named by environment: HTTPS, announced as https://.
    let mut otpd = OtpdProcess::start(
        store.path(),
        &[
            ("OTPD__HTTP__TLS__CERT_FILE", &cert),
            ("OTPD__HTTP__TLS__KEY_FILE", &key),
        ],
    );
    // The port is reported as soon as the line is read; the line joins the output just after.
    let announced = format!("https://127.0.0.1:{}", otpd.port);
    let deadline = Instant::now() + WAIT;
    while !otpd.output().contains(&announced) {
        assert!(Instant::now() < deadline, "{}", otpd.output());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let status = client
        .get(format!("https://localhost:{}/healthz", otpd.port))
        .send()
        .await
        .expect("an HTTPS request")
        .status();
    assert_eq!(status, 200);
    otpd.stop();
}

// ---------------------------------------------------------------------------
// amqps

/// Terminates TLS on loopback and forwards the bytes to RabbitMQ; counts handshakes.
struct TlsProxy {
    port: u16,
    handshakes: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl TlsProxy {
    async fn start(config: Arc<rustls::ServerConfig>) -> TlsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handshakes = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (counted, failed, spawned) = (
            Arc::clone(&handshakes),
            Arc::clone(&refused),
            Arc::clone(&connections),
        );
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let (counted, failed) = (Arc::clone(&counted), Arc::clone(&failed));
                let connection = tokio::spawn(async move {
                    let Ok(Ok(mut tls)) = tokio::time::timeout(WAIT, acceptor.accept(client)).await
                    else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut broker) = TcpStream::connect(RABBITMQ).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                    }
                });
                spawned.lock().unwrap().push(connection);
            }
        });
        TlsProxy {
            port,
            handshakes,
            refused,
            connections,
            task,
        }
    }

    fn url(&self) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Drops every proxied connection, as a broker restart would.
    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn readyz(app: &TestApp) -> u16 {
    send(app.anonymous(reqwest::Method::GET, "/readyz"))
        .await
        .status
        .as_u16()
}

async fn wait_ready(app: &TestApp) {
    let deadline = Instant::now() + WAIT;
    while readyz(app).await != 200 {
        assert!(
            Instant::now() < deadline,
            "broker mode over amqps never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn amqps_trusts_the_configured_ca_and_reconnects_over_tls() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(pki.server_config()).await;
    let broker = Broker::connect().await;
    let app = spawn_app_with(|settings| {
        broker.configure(settings);
        settings.amqp.url = Some(proxy.url());
        settings.amqp.tls.ca_file = Some(pki.ca_file());
    })
    .await;
    wait_ready(&app).await;
    assert_eq!(proxy.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 0);

    let created = app.create_sms(&de_mobile(61)).await;
    let id = created["id"].as_str().unwrap();
    let messages = wait_for_messages(app.store_dir(), id, 1).await;
    let code = message_code(&messages[0], 6);
    app.check_code(id, &code).await.expect_status(200);

    // The connection drops; the supervisor reconnects, again over TLS through the proxy.
    proxy.cut();
    let deadline = Instant::now() + WAIT;
    while proxy.handshakes.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "no TLS reconnection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_ready(&app).await;
    let created = app.create_sms(&de_mobile(62)).await;
    let id = created["id"].as_str().unwrap();
    wait_for_messages(app.store_dir(), id, 1).await;
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 0);

    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn amqps_without_the_ca_does_not_connect() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(pki.server_config()).await;
    let broker = Broker::connect().await;
    let app = spawn_app_with(|settings| {
        broker.configure(settings);
        settings.amqp.url = Some(proxy.url());
    })
    .await;
    // The client refuses the proxy's certificate, attempt after attempt.
    let deadline = Instant::now() + WAIT;
    while proxy.refused.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "otpd never tried the proxy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.handshakes.load(Ordering::SeqCst), 0);
    assert_eq!(readyz(&app).await, 503);
    app.create(&serde_json::json!({"to": de_mobile(63), "channel": "sms"}))
        .await
        .expect_status(503);
    assert_eq!(proxy.handshakes.load(Ordering::SeqCst), 0);
    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn amqps_shows_the_client_certificate_a_broker_requires() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(pki.mutual_server_config()).await;
    let broker = Broker::connect().await;

    // Trusting the CA is not enough for a broker that wants a client certificate.
    let without = spawn_app_with(|settings| {
        broker.configure(settings);
        settings.amqp.url = Some(proxy.url());
        settings.amqp.tls.ca_file = Some(pki.ca_file());
    })
    .await;
    let deadline = Instant::now() + WAIT;
    while proxy.refused.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "otpd never tried the proxy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(readyz(&without).await, 503);
    drop(without);
    let handshakes_before = proxy.handshakes.load(Ordering::SeqCst);
    assert_eq!(handshakes_before, 0);

    let app = spawn_app_with(|settings| {
        broker.configure(settings);
        settings.amqp.url = Some(proxy.url());
        settings.amqp.tls.ca_file = Some(pki.ca_file());
        settings.amqp.tls.cert_file = Some(pki.client_cert_file());
        settings.amqp.tls.key_file = Some(pki.client_key_file());
    })
    .await;
    wait_ready(&app).await;
    assert_eq!(proxy.handshakes.load(Ordering::SeqCst), 1);
    let created = app.create_sms(&de_mobile(64)).await;
    let id = created["id"].as_str().unwrap();
    wait_for_messages(app.store_dir(), id, 1).await;
    drop(app);
    broker.clean_up().await;
}

// ---------------------------------------------------------------------------
// SMTP

fn smtps(server: &FakeSmtpServer, ca_file: Option<PathBuf>) -> SmtpProvider {
    SmtpProvider::new(
        "mail",
        SmtpConfig {
            host: "localhost".into(),
            port: Some(server.port()),
            tls: SmtpTls::Implicit,
            username: None,
            password: None,
            from: "no-reply@acme.example".into(),
            subject: "Code".into(),
            timeout_ms: 5000,
            ca_file,
        },
    )
    .expect("build the SMTP provider")
}

fn email(to: &str) -> OutboundMessage {
    let verification_id = VerificationId::generate();
    OutboundMessage {
        job_id: JobId::new(&verification_id, 1),
        verification_id,
        tenant: "acme".into(),
        channel: Channel::Email,
        to: to.into(),
        body: "Your code is 123456".into(),
        locale: None,
        code: otpd::domain::OtpCode::parse("123456").unwrap(),
        sender_id: None,
        registration: None,
    }
}

#[tokio::test]
async fn smtp_delivers_over_tls_trusting_the_configured_ca() {
    let pki = Pki::new();
    let server = FakeSmtpServer::start_tls(pki.server_config())
        .await
        .unwrap();

    let receipt = smtps(&server, Some(pki.ca_file()))
        .send(&email("user@example.com"))
        .await
        .expect("delivered over TLS");
    assert!(receipt.provider_message_id.is_some());
    let messages = server.control().messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].to, "user@example.com");

    // Without the CA the relay's certificate is not trusted and nothing is delivered.
    let error = smtps(&server, None)
        .send(&email("other@example.com"))
        .await
        .expect_err("an untrusted relay");
    assert!(error.to_string().contains("SMTP"), "{error}");
    assert_eq!(server.control().messages().len(), 1);
}

#[test]
fn smtp_reports_a_bad_ca_file_by_its_setting() {
    let pki = Pki::new();
    let mut config = SmtpConfig {
        host: "smtp.example.com".into(),
        port: None,
        tls: SmtpTls::Starttls,
        username: None,
        password: None,
        from: "no-reply@acme.example".into(),
        subject: "Code".into(),
        timeout_ms: 5000,
        ca_file: Some(pki.dir.path().join("absent.pem")),
    };
    let problems = config.validate("providers.mail").join("\n");
    assert!(
        problems.contains("providers.mail.ca_file: cannot read"),
        "{problems}"
    );
    config.ca_file = Some(pki.key_file());
    let problems = config.validate("providers.mail").join("\n");
    assert!(problems.contains("providers.mail.ca_file"), "{problems}");
    config.ca_file = Some(pki.ca_file());
    assert!(config.validate("providers.mail").is_empty());
}

#[tokio::test]
async fn an_smpp_bind_goes_over_tls_and_checks_the_smsc_s_certificate() {
    let pki = Pki::new();
    let smsc = otpd::testing::FakeSmsc::start_tls("otpd", "pw-1", pki.server_config())
        .await
        .unwrap();
    let config = |ca_file: Option<PathBuf>| otpd::providers::SmppConfig {
        host: "localhost".into(),
        tls: true,
        ca_file,
        timeout_ms: 5_000,
        ..crate::providers::smpp_to(smsc.port())
    };
    let message = OutboundMessage {
        channel: Channel::Sms,
        to: "+4915112345678".into(),
        ..email("unused@example.com")
    };
    let trusting =
        otpd::providers::SmppProvider::new("smsc", config(Some(pki.ca_file())), None).unwrap();
    trusting.send(&message).await.unwrap();
    assert_eq!(smsc.control().submitted()[0].to, "4915112345678");

    // The public CAs alone do not know the test's CA: no bind, and the send says why.
    let doubting = otpd::providers::SmppProvider::new("smsc", config(None), None).unwrap();
    let refused = doubting.send(&message).await.unwrap_err();
    assert!(
        refused.to_string().contains("TLS handshake") && refused.is_transient(),
        "{refused}"
    );
    assert_eq!(
        smsc.control().binds(),
        1,
        "no bind without a trusted certificate"
    );
}
