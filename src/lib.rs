//! cipherd: encryption as a service, wire-compatible with Vault's Transit engine.
//!
//! # Layout
//!
//! Layers, top to bottom; a layer only uses the ones below it (see DESIGN.md):
//!
//! | module      | owns                                                               |
//! |-------------|--------------------------------------------------------------------|
//! | [`audit`]   | audit devices, hash-chained signed log, offline verify and reports |
//! | [`engine`]  | transit operations over named keyrings, key cache, batching        |
//! | [`keyring`] | one named key: type, versions, rotation, min versions, config      |
//! | [`crypto`]  | pure primitives: AEAD, signatures, HMAC, KDF, ciphertext format    |
//! | [`seal`]    | master key, Shamir shares, barrier encryption                      |
//! | [`storage`] | the storage trait and its backends                                 |
//!
//! `crypto`, `keyring` and `engine` do no network or file I/O and know nothing of
//! HTTP, gRPC or JSON; `tests/layering.rs` keeps it that way.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod crypto;
pub mod engine;
pub mod keyring;
pub mod seal;
pub mod server;
pub mod service;
pub mod storage;
pub mod tls;
