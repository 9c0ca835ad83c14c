//! Issuance's settings: `[verification]` (codes, lifetimes, attempts, resend rules) and
//! `[rate_limits]` (creates per tenant and per client IP), with their checks.

use serde::Deserialize;

use crate::domain::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH};

/// Shortest and longest lifetime a caller may ask for, in seconds.
pub const MIN_TTL_SECONDS: u64 = 30;
pub const MAX_TTL_SECONDS: u64 = 900;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationSettings {
    /// Default code length (4–10). Default 6.
    pub code_length: u8,
    /// Default lifetime in seconds (30–900). Default 300.
    pub ttl_seconds: u64,
    /// Checks allowed per verification. Default 5.
    pub max_attempts: u32,
    /// Seconds before a destination may get a new code. Default 30.
    pub resend_cooldown_seconds: u64,
    /// Codes per destination within `send_window_seconds`. Default 5.
    pub sends_per_destination: u32,
    /// Window of the per-destination send limit, seconds. Default 600.
    pub send_window_seconds: u64,
    /// How long an Idempotency-Key is remembered, seconds. Default 86400.
    pub idempotency_ttl_seconds: u64,
}

impl VerificationSettings {
    /// Every problem with `[verification]`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(MIN_CODE_LENGTH..=MAX_CODE_LENGTH).contains(&self.code_length) {
            problems.push(format!(
                "verification.code_length is {}; allowed: {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH}",
                self.code_length
            ));
        }
        if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&self.ttl_seconds) {
            problems.push(format!(
                "verification.ttl_seconds is {}; allowed: {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}",
                self.ttl_seconds
            ));
        }
        if !(1..=100).contains(&self.max_attempts) {
            problems.push(format!(
                "verification.max_attempts is {}; allowed: 1 to 100",
                self.max_attempts
            ));
        }
        if self.sends_per_destination == 0 {
            problems.push("verification.sends_per_destination must be at least 1".into());
        }
        if self.send_window_seconds == 0 {
            problems.push("verification.send_window_seconds must be at least 1".into());
        }
        problems
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Creates per second per tenant. Default 200.
    pub tenant_per_second: f64,
    /// Burst per tenant. Default 400.
    pub tenant_burst: u32,
    /// Creates per second per client IP. Default 20.
    pub client_ip_per_second: f64,
    /// Burst per client IP. Default 40.
    pub client_ip_burst: u32,
}

impl RateLimitSettings {
    /// Every problem with `[rate_limits]`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, rate) in [
            ("tenant_per_second", self.tenant_per_second),
            ("client_ip_per_second", self.client_ip_per_second),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                problems.push(format!(
                    "rate_limits.{name} is {rate}; it must be a positive number"
                ));
            }
        }
        for (name, burst) in [
            ("tenant_burst", self.tenant_burst),
            ("client_ip_burst", self.client_ip_burst),
        ] {
            if burst == 0 {
                problems.push(format!("rate_limits.{name} must be at least 1"));
            }
        }
        problems
    }
}
