//! Keyward's rules as pure functions and types.
//!
//! Invariant: nothing in this crate performs I/O, reads a clock, draws randomness or is async,
//! and nothing here derives serde for a wire format.
//! Time and fresh identifiers are passed in; every allow/deny decision is made here.
#![forbid(unsafe_code)]

pub mod agent_limits;
pub mod audit;
pub mod audit_chain;
pub mod audit_query;
pub mod auth_methods;
pub mod authorize;
pub mod authz;
pub mod bulk;
pub mod caller_verification;
pub mod consent;
pub mod delta;
pub mod directory;
pub mod dual_control;
pub mod fnv;
pub mod ids;
pub mod json;
pub mod methods_policy;
pub mod notify;
pub mod oauth;
pub mod odata;
pub mod password;
pub mod pim;
pub mod profile;
pub mod query;
pub mod registration;
pub mod secret;
pub mod signin;
pub mod signin_query;
pub mod totp;
pub mod webauthn;
