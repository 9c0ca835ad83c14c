//! Tenants: the dev tenant on first start, `otpd tenant add`, keys stored only hashed.

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
