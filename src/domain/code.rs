//! One-time codes: generated from the OS CSPRNG, stored only as an HMAC, compared in constant time.

use super::random::OsRandom;
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

/// Shortest and longest code a caller may ask for.
pub const MIN_CODE_LENGTH: u8 = 4;
pub const MAX_CODE_LENGTH: u8 = 10;

/// A code in clear. It never prints: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl OtpCode {
    /// A uniformly random numeric code of `length` digits, from the OS CSPRNG.
    ///
    /// `gen_range` samples by rejection, so every code is equally likely (no modulo bias).
    pub fn generate(length: u8) -> Self {
        let length = length.clamp(MIN_CODE_LENGTH, MAX_CODE_LENGTH);
        let upper = 10u64.pow(u32::from(length));
        let value = OsRandom.gen_range(0..upper);
        OtpCode(format!("{value:0width$}", width = usize::from(length)))
    }

    /// Wraps a code a person typed, if it has the form of a code (4–10 ASCII digits).
    pub fn parse(candidate: &str) -> Option<Self> {
        let length = candidate.len();
        let well_formed = (usize::from(MIN_CODE_LENGTH)..=usize::from(MAX_CODE_LENGTH))
            .contains(&length)
            && candidate.bytes().all(|b| b.is_ascii_digit());
        well_formed.then(|| OtpCode(candidate.to_owned()))
    }

    /// The digits, for the one place that needs them: the message sent to the person.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// The digits one at a time, for a voice to read: `4, 9, 3, 8, 1, 7`. A speech engine
    /// reads `493817` as a number ("four hundred ninety-three thousand…").
    pub fn spelled_out(&self) -> String {
        let digits: Vec<String> = self.0.chars().map(String::from).collect();
        digits.join(", ")
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(<redacted>)")
    }
}

/// HMAC-SHA256(pepper, verification id ‖ 0 ‖ code): what the store keeps instead of a code.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct CodeHash(pub [u8; 32]);

impl CodeHash {
    /// Compares in constant time.
    pub fn matches(&self, other: &CodeHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHash(<redacted>)")
    }
}

/// Holds the server pepper and turns codes into [`CodeHash`]es.
#[derive(Clone)]
pub struct CodeHasher {
    pepper: SecretSlice<u8>,
}

impl CodeHasher {
    pub fn new(pepper: SecretSlice<u8>) -> Self {
        CodeHasher { pepper }
    }

    pub fn hash(&self, verification_id: &str, code: &OtpCode) -> CodeHash {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.pepper.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(verification_id.as_bytes());
        mac.update(&[0]);
        mac.update(code.0.as_bytes());
        CodeHash(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> CodeHasher {
        CodeHasher::new(SecretSlice::from(vec![7u8; 32]))
    }

    #[test]
    fn a_code_to_be_read_out_is_spelled_digit_by_digit() {
        assert_eq!(OtpCode("049381".into()).spelled_out(), "0, 4, 9, 3, 8, 1");
    }

    #[test]
    fn generates_codes_of_the_requested_length() {
        for length in MIN_CODE_LENGTH..=MAX_CODE_LENGTH {
            let code = OtpCode::generate(length);
            assert_eq!(code.reveal().len(), usize::from(length));
            assert!(code.reveal().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    /// Chi-square over 100,000 six-digit codes: each digit position, and the leading pair,
    /// must look uniform. The critical values are for p = 1e-7 (Wilson–Hilferty), so a sound
    /// generator fails about once in a million runs over the seven statistics, while a
    /// generator that favours one digit by 10 % (chi² near 110 here) fails nearly every run,
    /// and one that skips a digit every run.
    #[test]
    fn codes_are_uniform() {
        const SAMPLES: usize = 100_000;
        let mut per_position = [[0u32; 10]; 6];
        let mut leading_pairs = [0u32; 100];
        for _ in 0..SAMPLES {
            let code = OtpCode::generate(6);
            let digits: Vec<usize> = code
                .reveal()
                .bytes()
                .map(|b| usize::from(b - b'0'))
                .collect();
            for (position, digit) in digits.iter().enumerate() {
                per_position[position][*digit] += 1;
            }
            leading_pairs[digits[0] * 10 + digits[1]] += 1;
        }
        for (position, counts) in per_position.iter().enumerate() {
            let statistic = chi_square(counts, SAMPLES);
            assert!(statistic < 51.8, "position {position}: chi² = {statistic}");
        }
        let statistic = chi_square(&leading_pairs, SAMPLES);
        assert!(statistic < 190.6, "leading pairs: chi² = {statistic}");
    }

    fn chi_square(counts: &[u32], samples: usize) -> f64 {
        let expected = samples as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&observed| (f64::from(observed) - expected).powi(2) / expected)
            .sum()
    }

    #[test]
    fn parse_accepts_only_digit_strings_of_code_length() {
        assert!(OtpCode::parse("0123").is_some());
        assert!(OtpCode::parse("0123456789").is_some());
        for bad in ["123", "01234567890", "12a456", "", " 123456", "١٢٣٤٥٦"] {
            assert!(OtpCode::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn hash_binds_code_to_verification() {
        let code = OtpCode::parse("123456").unwrap();
        let hasher = hasher();
        assert!(hasher
            .hash("ver_a", &code)
            .matches(&hasher.hash("ver_a", &code)));
        assert!(!hasher
            .hash("ver_a", &code)
            .matches(&hasher.hash("ver_b", &code)));
        let other = OtpCode::parse("123457").unwrap();
        assert!(!hasher
            .hash("ver_a", &code)
            .matches(&hasher.hash("ver_a", &other)));
    }

    #[test]
    fn debug_never_shows_the_code() {
        let code = OtpCode::parse("987654").unwrap();
        assert!(!format!("{code:?}").contains("987654"));
    }
}
