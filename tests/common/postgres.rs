//! A PostgreSQL server for the tests: the one named by
//! `CIPHERD_TEST_POSTGRES_URL` (scripts/test-all starts it), or else a
//! throwaway cluster started with `scripts/pg-test-cluster` and stopped when
//! the returned guard drops — so the test binary's `main` owns the guard
//! and the cluster goes away even when a test panics.
//!
//! Each test gets a fresh database of its own ([`Cluster::database`]).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use tokio_postgres::{Client, NoTls};

/// The cluster in use.
pub struct Cluster {
    url: String,
    /// Set when this process started the cluster (and must stop it).
    owned: Option<(PathBuf, tempfile::TempDir)>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-test-cluster")
}

impl Cluster {
    /// The environment's cluster, or a new one.
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("CIPHERD_TEST_POSTGRES_URL")
            && !url.is_empty()
        {
            return Self { url, owned: None };
        }
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path().join("pg");
        let output = Command::new(script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("run scripts/pg-test-cluster");
        assert!(
            output.status.success(),
            "pg-test-cluster start failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = String::from_utf8(output.stdout)
            .expect("UTF-8 URL")
            .trim()
            .to_owned();
        assert!(url.starts_with("postgres://"), "unexpected URL {url:?}");
        Self {
            url,
            owned: Some((dir, temp)),
        }
    }

    /// The URL of a new, empty database called `name` (dropped first if a
    /// previous run left it).
    pub async fn database(&self, name: &str) -> String {
        let admin = connect(&self.url).await;
        // Two statements: neither may run inside a transaction block.
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&statement)
                .await
                .expect("create the test database");
        }
        let (base, _) = self.url.rsplit_once('/').expect("URL with a database");
        format!("{base}/{name}")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((dir, _temp)) = &self.owned {
            let _ = Command::new(script()).arg("stop").arg(dir).status();
        }
    }
}

/// A connection; its driver runs on the current runtime.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
