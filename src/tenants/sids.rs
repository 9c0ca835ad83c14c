//! A tenant's names in the Twilio-compatible API: its account SID (`AC` + 32 hex), the user
//! name of HTTP Basic auth, and the SID of its one Verify service (`VA` + 32 hex). Both are
//! derived from the tenant's name, so every node of a cluster gives the same ones without
//! storing anything; neither is a secret (the API key is).

use sha2::{Digest, Sha256};

/// The account SID of `tenant`, as `otpd tenant list` shows it.
pub fn account_sid(tenant: &str) -> String {
    derived("AC", "account", tenant)
}

/// The SID of `tenant`'s Verify service.
pub fn service_sid(tenant: &str) -> String {
    derived("VA", "verify-service", tenant)
}

/// `prefix` and 32 hex digits of SHA-256 over what is named and the tenant's name.
fn derived(prefix: &str, what: &str, tenant: &str) -> String {
    let digest = Sha256::digest(format!("otpd {what}\0{tenant}").as_bytes());
    format!("{prefix}{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_have_twilio_forms_and_differ_per_tenant_and_kind() {
        let account = account_sid("acme");
        assert!(
            account.starts_with("AC") && account.len() == 34,
            "{account}"
        );
        assert!(account[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            account,
            account_sid("acme"),
            "the same on every call and node"
        );
        assert_ne!(account, account_sid("acme2"));
        let service = service_sid("acme");
        assert!(
            service.starts_with("VA") && service.len() == 34,
            "{service}"
        );
        assert_ne!(service[2..], account[2..]);
    }
}
