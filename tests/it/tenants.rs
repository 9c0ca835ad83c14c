//! Tenants: the dev tenant on first start, keys stored only hashed, `otpd tenant add|list|rotate|revoke`, and a revoked key refused at once.

use std::path::Path;

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

fn files_under(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("read the store dir")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn bytes_contain(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn first_start_creates_the_dev_tenant_with_a_private_key_file() {
    let app = spawn_app().await;

    let path = app.store_dir().join("dev-api-key");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777
    };

    assert_eq!(mode, 0o600, "dev-api-key mode {mode:o}");
    let probe = send(app.request(Method::GET, "/v1/verifications/ver_none")).await;
    probe.expect_error(404, "not_found");
}

#[tokio::test]
async fn a_tenant_added_while_running_is_accepted() {
    let app = spawn_app().await;
    let acme = app.add_tenant("acme");
    assert_ne!(acme, app.api_key);

    let reply = app
        .create_as(&acme, &json!({"to": DE_MOBILE, "channel": "sms"}))
        .await;

    reply.expect_status(201);
    let id = reply.str("id");
    let code = app.code_for(id).await;
    let check = send(
        app.request_as(
            &acme,
            Method::POST,
            &format!("/v1/verifications/{id}/check"),
        )
        .json(&json!({"code": code})),
    )
    .await;
    assert_eq!(check.body["valid"], true, "{}", check.text);
}

#[tokio::test]
async fn a_tenant_added_before_first_start_means_no_dev_tenant() {
    let store = tempfile::tempdir().unwrap();
    let acme = add_tenant(store.path(), "acme");
    let app = start_app(store, |_| {});

    let probe = send(app.request_as(&acme, Method::GET, "/v1/verifications/ver_none")).await;

    probe.expect_error(404, "not_found");
    assert!(
        !app.store_dir().join("dev-api-key").exists(),
        "a dev tenant was created although tenant acme is configured"
    );
}

#[tokio::test]
async fn tenant_keys_are_stored_only_hashed() {
    let store = tempfile::tempdir().unwrap();
    let first = add_tenant(store.path(), "acme");
    let second = add_tenant(store.path(), "globex");
    assert_ne!(first, second);

    let mut files = Vec::new();
    files_under(store.path(), &mut files);
    assert!(!files.is_empty(), "tenant add stored nothing");
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for key in [&first, &second] {
            assert!(
                !bytes_contain(&bytes, key.as_bytes()),
                "{} holds a tenant key in plain text",
                file.display()
            );
        }
    }
}

/// A request that only authenticates: 404 for a valid key, 401 for a refused one.
async fn probe(app: &TestApp, key: &str) -> Reply {
    send(app.request_as(key, Method::GET, "/v1/verifications/ver_none")).await
}

#[tokio::test]
async fn a_rotated_key_works_beside_the_old_one_until_the_old_one_is_revoked() {
    let app = spawn_app().await;
    let old = app.add_tenant("acme");
    let settings = otpd::config::Settings::load(None).unwrap();

    let rotation = otpd::tenants::rotate_key(app.store_dir(), &settings.tenants, "acme").unwrap();
    probe(&app, &old).await.expect_error(404, "not_found");
    probe(&app, &rotation.issued.key)
        .await
        .expect_error(404, "not_found");
    assert_eq!(rotation.previous.len(), 1, "{:?}", rotation.previous);

    let revoked = otpd::tenants::revoke_keys(
        app.store_dir(),
        &settings.tenants,
        "acme",
        &otpd::tenants::Revoke::Key(rotation.previous[0].clone()),
        false,
    )
    .unwrap();

    assert_eq!(revoked.remaining, vec![rotation.issued.id.clone()]);
    probe(&app, &old).await.expect_error(401, "unauthorized");
    app.create_as(&old, &json!({"to": DE_MOBILE, "channel": "sms"}))
        .await
        .expect_error(401, "unauthorized");
    probe(&app, &rotation.issued.key)
        .await
        .expect_error(404, "not_found");
    app.create_as(
        &rotation.issued.key,
        &json!({"to": DE_MOBILE, "channel": "sms"}),
    )
    .await
    .expect_status(201);
}

/// Runs `otpd tenant ARGS` on `store`; returns (success, stdout, stderr).
fn tenant_cli(store: &Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(otpd_binary())
        .arg("tenant")
        .args(args)
        .env("OTPD__STORE__DIR", store)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run otpd tenant");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The key ids listed for `tenant`, with their status text.
fn listed_keys(listing: &str, tenant: &str) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let mut inside = false;
    for line in listing.lines() {
        if let Some(name) = line.strip_prefix("tenant ") {
            inside = name.trim() == tenant;
        } else if inside {
            let line = line.trim();
            if line.starts_with("key_") {
                let id = line.split_whitespace().next().unwrap().to_string();
                keys.push((id, line.to_string()));
            }
        }
    }
    keys
}

#[test]
fn the_cli_adds_lists_rotates_and_revokes_keys_without_showing_them() {
    let store = tempfile::tempdir().unwrap();
    let first = add_tenant(store.path(), "acme");

    let (ok, listing, _) = tenant_cli(store.path(), &["list"]);
    assert!(ok);
    let keys = listed_keys(&listing, "acme");
    assert_eq!(keys.len(), 1, "{listing}");
    assert!(
        listing.contains("settings: channels=default countries=all"),
        "{listing}"
    );
    let account = otpd::tenants::account_sid("acme");
    assert!(
        listing.contains(&format!("account SID: {account}")),
        "{listing}"
    );
    let first_id = keys[0].0.clone();

    let (ok, rotated, hints) = tenant_cli(store.path(), &["rotate", "acme"]);
    assert!(ok, "{hints}");
    let second = rotated.trim().to_string();
    assert!(second.starts_with("otpd_") && second != first, "{rotated}");
    assert!(
        hints.contains(&format!("otpd tenant revoke acme {first_id}")),
        "rotate does not say how to revoke the old key: {hints}"
    );

    let (ok, out, err) = tenant_cli(store.path(), &["revoke", "acme", &first_id]);
    assert!(ok, "{out}{err}");
    let (_, listing, _) = tenant_cli(store.path(), &["list"]);
    let keys = listed_keys(&listing, "acme");
    assert_eq!(keys.len(), 2, "{listing}");
    assert!(keys[0].1.contains("revoked"), "{listing}");
    assert!(keys[1].1.contains("active"), "{listing}");
    for secret in [&first, &second] {
        let hash = hex::encode(otpd::tenants::hash_key(secret));
        assert!(!listing.contains(secret.as_str()), "list shows a key");
        assert!(!listing.contains(&hash), "list shows a key hash");
    }

    let (ok, _, err) = tenant_cli(store.path(), &["revoke", "acme", &keys[1].0]);
    assert!(!ok, "the last key was revoked without --force");
    assert!(err.contains("--force"), "{err}");
    let (ok, _, err) = tenant_cli(store.path(), &["revoke", "ghost", "key_00000000"]);
    assert!(!ok && err.contains("no tenant 'ghost'"), "{err}");
    let (ok, _, err) = tenant_cli(store.path(), &["revoke", "acme", "key_00000000"]);
    assert!(!ok && err.contains("has no key key_00000000"), "{err}");
    let (ok, _, err) = tenant_cli(store.path(), &["rotate", "ghost"]);
    assert!(!ok && err.contains("no tenant 'ghost'"), "{err}");

    let (ok, out, err) = tenant_cli(store.path(), &["revoke", "acme", "--all"]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("no valid key left"), "{err}");
    let (_, listing, _) = tenant_cli(store.path(), &["list"]);
    assert!(
        listed_keys(&listing, "acme")
            .iter()
            .all(|(_, line)| line.contains("revoked")),
        "{listing}"
    );
}

#[tokio::test]
async fn a_keys_file_from_before_key_ids_still_works() {
    let store = tempfile::tempdir().unwrap();
    let key = otpd::tenants::generate_key();
    let hash = hex::encode(otpd::tenants::hash_key(&key));
    std::fs::write(
        otpd::tenants::keys_file(store.path()),
        format!("acme {hash}\n"),
    )
    .unwrap();
    let app = start_app(store, |_| {});

    probe(&app, &key).await.expect_error(404, "not_found");
    let (ok, listing, _) = tenant_cli(app.store_dir(), &["list"]);
    assert!(ok);
    let keys = listed_keys(&listing, "acme");
    assert_eq!(keys.len(), 1, "{listing}");
    assert_eq!(keys[0].0, format!("key_{}", &hash[..8]));
    assert!(!listing.contains(&hash), "list shows the hash");
}
