//! `Otpd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<raw body>">`, with the
//! tenant's webhook secret. A receiver recomputes it over the raw body and refuses a
//! signature older than its tolerance (the README suggests 300 s), against replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's value for `body` sent at `unix_seconds`.
pub fn sign(secret: &[u8], unix_seconds: u64, body: &[u8]) -> String {
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac(secret, unix_seconds, body))
    )
}

fn mac(secret: &[u8], unix_seconds: u64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Whether `header` signs `body` with `secret`, at most `tolerance_seconds` from `now`.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64, tolerance_seconds: u64) -> bool {
    let mut time = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => time = value.parse::<u64>().ok(),
            Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(time) = time else { return false };
    now.abs_diff(time) <= tolerance_seconds
        && signatures.iter().any(|signature| {
            let mut check = Hmac::<Sha256>::new_from_slice(secret).expect("any length");
            check.update(format!("{time}.").as_bytes());
            check.update(body);
            check.verify_slice(signature).is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(b"whsec", 1_800_000_000, body);
        assert!(header.starts_with("t=1800000000,v1="), "{header}");
        assert!(verify(b"whsec", &header, body, 1_800_000_100, 300));
        assert!(!verify(
            b"whsec",
            &header,
            br#"{"id":"evt_2"}"#,
            1_800_000_100,
            300
        ));
        assert!(!verify(b"other", &header, body, 1_800_000_100, 300));
        assert!(
            !verify(b"whsec", &header, body, 1_800_000_301, 300),
            "too old"
        );
        assert!(!verify(b"whsec", "v1=00", body, 1_800_000_000, 300));
    }
}
