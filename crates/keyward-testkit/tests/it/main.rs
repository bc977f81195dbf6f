//! Keyward's integration tests: one binary, every test on both SQLite and PostgreSQL.

mod api;
mod audit;
mod audit_chain;
mod bulk;
mod caller_verification;
mod directory;
mod dual_control;
mod methods;
mod notifications;
mod oidc;
mod passkeys;
mod pim;
mod policy;
mod portal;
mod queries;
mod reports;
mod roles;
mod security;
mod signin;
mod story;
