//! Shared test harness. Each submodule is one kind of helper; add yours beside
//! them and declare it here.
#![allow(dead_code)]

/// Out-of-process servers (spawned `cipherd` binaries) and a small REST client.
pub mod process;

/// In-process servers (the REST router on the test's runtime over memory
/// storage) and a small REST client.
pub mod inprocess;

/// A PostgreSQL cluster for the bulk rewrap tests (the environment's or a
/// throwaway one).
pub mod postgres;

/// Dev server, ciphertexts and job runs for the bulk rewrap tests.
pub mod rewrap;
