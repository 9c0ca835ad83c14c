//! Races: many checks or creates at once must keep "a code is accepted once" and the attempt cap.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_100_concurrent_right_codes_exactly_one_is_valid() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;
    let code = app.code_for(&id).await;

    let replies = join_all((0..100).map(|_| app.check_code(&id, &code))).await;

    let valid = replies.iter().filter(|r| r.body["valid"] == true).count();
    assert_eq!(valid, 1, "{valid} checks accepted the same code");
    for reply in replies.iter().filter(|r| r.body["valid"] != true) {
        reply.expect_error(409, "already_approved");
    }
    assert_eq!(app.get(&id).await.str("status"), "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_200_concurrent_wrong_guesses_exactly_5_are_evaluated() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;
    let code = app.code_for(&id).await;
    let guesses: Vec<String> = (1..=200u32)
        .map(|n| format!("{:06}", (code.parse::<u32>().unwrap() + n) % 1_000_000))
        .collect();

    let replies = join_all(guesses.iter().map(|guess| app.check_code(&id, guess))).await;

    let evaluated: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status.as_u16() == 200)
        .collect();
    assert_eq!(evaluated.len(), 5, "evaluated guesses");
    assert!(evaluated.iter().all(|r| r.body["valid"] == false));
    let mut remaining: Vec<u64> = evaluated
        .iter()
        .map(|r| r.u64("attempts_remaining"))
        .collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        vec![0, 1, 2, 3, 4],
        "each evaluation used its own attempt"
    );
    for reply in replies.iter().filter(|r| r.status.as_u16() != 200) {
        reply.expect_error(409, "max_attempts_reached");
    }
    app.check_code(&id, &code)
        .await
        .expect_error(409, "max_attempts_reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_20_concurrent_creates_for_one_destination_one_issues_a_code() {
    let app = spawn_app().await;
    let body = json!({"to": DE_MOBILE, "channel": "sms"});

    let replies = join_all((0..20).map(|_| app.create(&body))).await;

    let created: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status.as_u16() == 201)
        .collect();
    assert_eq!(created.len(), 1, "statuses: {:?}", statuses(&replies));
    for reply in replies.iter().filter(|r| r.status.as_u16() != 201) {
        reply.expect_error(429, "resend_cooldown");
    }
    let id = created[0].str("id");
    app.messages_for(id, 1).await;
    let marker = app.create_sms(FR_MOBILE).await;
    app.messages_for(marker["id"].as_str().unwrap(), 1).await;
    let to_de = read_outbox(app.store_dir())
        .into_iter()
        .filter(|m| m["to"] == DE_MOBILE)
        .count();
    assert_eq!(to_de, 1, "codes sent to one destination");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_with_one_idempotency_key_issue_one_code() {
    let app = spawn_app().await;
    let body = json!({"to": DE_MOBILE, "channel": "sms"});

    let replies = join_all((0..20).map(|_| {
        send(
            app.request(Method::POST, "/v1/verifications")
                .header("Idempotency-Key", "race-1")
                .json(&body),
        )
    }))
    .await;

    let created: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status.as_u16() == 201)
        .collect();
    assert!(!created.is_empty(), "statuses: {:?}", statuses(&replies));
    let id = created[0].str("id");
    assert!(created.iter().all(|r| r.str("id") == id), "two ids issued");
    for reply in &replies {
        assert!(
            reply.status.is_success() || reply.status.is_client_error(),
            "{} {}",
            reply.status,
            reply.text
        );
        if !reply.status.is_success() {
            reply.error_code();
        }
    }
    let marker = app.create_sms(FR_MOBILE).await;
    app.messages_for(marker["id"].as_str().unwrap(), 1).await;
    assert_eq!(outbox_messages(app.store_dir(), id).len(), 1);
}

fn statuses(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.status.as_u16()).collect()
}
