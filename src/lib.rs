//! otpd: issue one-time passcodes, deliver them through providers, verify them.
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod app;
pub mod bus;
pub mod caller_json;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod fraud;
pub mod issuance;
pub mod lists;
pub mod providers;
pub mod runtime;
pub mod secrets;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tenants;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod verify;
pub mod webhooks;
pub mod workflow_clock;
