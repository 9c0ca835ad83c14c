//! Integration tests for otpd: one binary, one module per area of the HTTP contract.

#![forbid(unsafe_code)]

mod amqp;
mod helpers;

mod access;
mod autofill;
mod channels;
mod check;
mod concurrency;
mod create;
mod deploy;
mod disk;
mod durability;
mod edge;
mod errors;
mod examples;
mod fraud;
mod hygiene;
mod idempotency;
mod leaks;
mod lifecycle;
mod limits;
mod openapi;
mod ops;
mod oracle;
mod providers;
mod receipts;
mod tenants;
mod timeline;
mod tls;
mod twilio;
mod ui;
mod webhooks;
mod workflows;
