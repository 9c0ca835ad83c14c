//! The store's disk fills up (a small tmpfs of the test's own, mounted for it and unmounted
//! after it, failed or not): creates get 503 at once, nothing is confirmed that is not on
//! disk, and otpd takes writes again by itself once space returns; on either engine.

use reqwest::Method;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// A tmpfs of `megabytes` mounted on a temp dir, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().expect("a mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CAP_SYS_ADMIN); this test fills a disk of its own"
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_gets_503_confirms_nothing_unwritten_and_recovers_when_space_returns_on_sled() {
    a_full_disk_gets_503_confirms_nothing_unwritten_and_recovers_when_space_returns("sled").await;
}

#[tokio::test]
async fn a_full_disk_gets_503_confirms_nothing_unwritten_and_recovers_when_space_returns_on_lsm() {
    a_full_disk_gets_503_confirms_nothing_unwritten_and_recovers_when_space_returns("lsm").await;
}

async fn a_full_disk_gets_503_confirms_nothing_unwritten_and_recovers_when_space_returns(
    engine: &str,
) {
    let disk = SmallDisk::mount(48);
    let store = disk.path().join("store");
    std::fs::create_dir(&store).expect("the store dir");
    let client = http_client();
    let env = [("OTPD__STORE__ENGINE", engine)];
    let mut server = OtpdProcess::start(&store, &env);
    let key = wait_for_dev_key(&store).await;
    let create = |server: &OtpdProcess, n: u32| {
        authed(&client, Method::POST, server.url("/v1/verifications"), &key)
            .timeout(Duration::from_secs(15))
            .json(&json!({"to": de_mobile(n), "channel": "sms"}))
    };
    let check = |server: &OtpdProcess, id: &str, code: &str| {
        authed(
            &client,
            Method::POST,
            server.url(&format!("/v1/verifications/{id}/check")),
            &key,
        )
        .timeout(Duration::from_secs(15))
        .json(&json!({"code": code}))
    };

    // Verifications whose codes are delivered before the disk fills, checked once it is.
    let mut before = Vec::new();
    for n in 0..5 {
        let reply = send(create(&server, n)).await;
        reply.expect_status(201);
        let id = reply.str("id").to_string();
        let code = message_code(&wait_for_messages(&store, &id, 1).await[0], 6);
        before.push((id, code));
    }

    let filler = disk.fill();
    let mut created = Vec::new();
    let mut approved = Vec::new();
    let mut refused = 0;
    let mut not_ready = false;
    for n in 0..20u32 {
        let started = Instant::now();
        let reply = send(create(&server, 10 + n)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a create on a full disk took {:?}",
            started.elapsed()
        );
        match reply.status.as_u16() {
            201 => created.push(reply.str("id").to_string()),
            503 => {
                refused += 1;
                reply.expect_error(503, "unavailable");
            }
            other => panic!("a create on a full disk got {other}: {}", reply.text),
        }
        if let Some((id, code)) = before.get(n as usize) {
            let reply = send(check(&server, id, code)).await;
            match reply.status.as_u16() {
                200 => approved.push(id.clone()),
                503 => {
                    reply.expect_error(503, "unavailable");
                }
                other => panic!("a check on a full disk got {other}: {}", reply.text),
            }
        }
        not_ready |= send(client.get(server.url("/readyz"))).await.status == 503;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "full disk: {refused} of 20 creates refused, {} answered 201; {} of {} checks approved; /readyz 503: {not_ready}",
        created.len(),
        approved.len(),
        before.len()
    );
    assert!(
        refused >= 15,
        "only {refused} of 20 creates were refused on a full disk"
    );
    assert!(not_ready, "/readyz never said the store was failing");

    // Space returns: creates succeed again without a restart.
    std::fs::remove_file(&filler).expect("remove the filler");
    let returned = Instant::now();
    let recovered = loop {
        let reply = send(create(&server, 40)).await;
        if reply.status == 201 {
            created.push(reply.str("id").to_string());
            break returned.elapsed();
        }
        assert!(
            returned.elapsed() < Duration::from_secs(20),
            "no create succeeded within 20 s of space returning: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("full disk: creates succeed again {recovered:?} after space returned");
    let (id, code) = &before[before.len() - 1];
    if !approved.contains(id) {
        send(check(&server, id, code)).await.expect_status(200);
        approved.push(id.clone());
    }

    // What was confirmed is on disk: after a kill -9, every 201 is there (and delivered),
    // and every check answered 200 stays approved.
    server.stop();
    let server = OtpdProcess::start(&store, &env);
    for id in &created {
        wait_for_messages(&store, id, 1).await;
    }
    for id in &approved {
        let reply = server.get_verification(&client, &key, id).await;
        reply.expect_status(200);
        assert_eq!(reply.str("status"), "approved", "{id} lost its approval");
    }
}
