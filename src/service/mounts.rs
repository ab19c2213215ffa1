//! The mount table: which transit engines exist at which paths.
//!
//! Stored at `core/mounts` behind the barrier (CBOR). Each mount's engine keeps
//! its data under `logical/<uuid>/`, so disabling a mount and enabling another at
//! the same path never mixes keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineOptions};
use crate::storage::Storage;

use super::ServiceError;

const MOUNTS_PATH: &str = "core/mounts";

/// What a mount is, as `sys/mounts` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    /// Path with a trailing slash, e.g. `transit/`.
    pub path: String,
    /// Engine type (`transit`).
    pub kind: String,
    /// Free text.
    pub description: String,
    /// Unique id; the engine's storage prefix.
    pub uuid: String,
    /// Accessor shown to clients.
    pub accessor: String,
    /// `default_lease_ttl` set by tuning, in seconds (0 = system default).
    /// Transit issues no leases; the value is kept and reported as Vault does.
    #[serde(default)]
    pub default_lease_ttl: u64,
    /// `max_lease_ttl` set by tuning, in seconds (0 = system default).
    #[serde(default)]
    pub max_lease_ttl: u64,
}

/// What `sys/mounts/:path/tune` may change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountTune {
    /// New description.
    pub description: Option<String>,
    /// New default lease TTL in seconds.
    pub default_lease_ttl: Option<u64>,
    /// New maximum lease TTL in seconds.
    pub max_lease_ttl: Option<u64>,
}

/// A live mount: its description and engine.
#[derive(Debug)]
pub struct Mount {
    /// Description.
    pub info: MountInfo,
    /// The engine serving it.
    pub engine: Arc<Engine>,
}

/// The live mount table. Reads are lock-free (`ArcSwap`); changes are serialized.
pub struct Mounts {
    storage: Arc<dyn Storage>,
    options: EngineOptions,
    table: ArcSwap<BTreeMap<String, Arc<Mount>>>,
    write: Mutex<()>,
}

impl std::fmt::Debug for Mounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounts")
            .field("paths", &self.table.load().keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Normalizes a mount path: no leading slash, exactly one trailing slash.
pub fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    format!("{trimmed}/")
}

impl Mounts {
    /// Loads the table and opens every engine. An empty store gets a `transit/`
    /// mount, as the issue requires.
    pub fn load(storage: Arc<dyn Storage>, options: EngineOptions) -> Result<Self, ServiceError> {
        let mounts = Self {
            storage,
            options,
            table: ArcSwap::from_pointee(BTreeMap::new()),
            write: Mutex::new(()),
        };
        let Some(bytes) = mounts.storage.get(MOUNTS_PATH)? else {
            mounts.enable("transit", "transit", "")?;
            return Ok(mounts);
        };
        let infos: Vec<MountInfo> = ciborium::from_reader(bytes.as_slice()).map_err(|_| {
            ServiceError::MountInvalid("the stored mount table is unreadable".into())
        })?;
        let mut table = BTreeMap::new();
        for info in infos {
            let engine = Engine::open(
                mounts.storage.clone(),
                &format!("logical/{}/", info.uuid),
                mounts.options.clone(),
            )?;
            table.insert(
                info.path.clone(),
                Arc::new(Mount {
                    info,
                    engine: Arc::new(engine),
                }),
            );
        }
        mounts.table.store(Arc::new(table));
        Ok(mounts)
    }

    /// The mount whose path is the longest prefix of `path` (which has no
    /// leading slash), and the rest of the path after it.
    pub fn route<'p>(&self, path: &'p str) -> Option<(Arc<Mount>, &'p str)> {
        let table = self.table.load();
        // Mount paths end with '/', so compare against the path plus a slash for
        // requests to the mount root.
        table
            .iter()
            .rev()
            .find(|(mount_path, _)| {
                path.starts_with(mount_path.as_str()) || mount_path.strip_suffix('/') == Some(path)
            })
            .map(|(mount_path, mount)| (mount.clone(), path.get(mount_path.len()..).unwrap_or("")))
    }

    /// Every mount, sorted by path.
    pub fn list(&self) -> Vec<MountInfo> {
        self.table.load().values().map(|m| m.info.clone()).collect()
    }

    /// Enables a transit engine at `path`.
    pub fn enable(
        &self,
        path: &str,
        kind: &str,
        description: &str,
    ) -> Result<MountInfo, ServiceError> {
        if kind != "transit" {
            return Err(ServiceError::MountInvalid(format!(
                "plugin not found in the catalog: {kind}"
            )));
        }
        let path = normalize_path(path);
        if path == "/"
            || path.starts_with("sys/")
            || path.starts_with("auth/")
            || path.contains("//")
        {
            return Err(ServiceError::MountInvalid(format!(
                "cannot mount at {path}"
            )));
        }
        let _write = self.write.lock();
        let current = self.table.load_full();
        if current
            .keys()
            .any(|existing| existing.starts_with(&path) || path.starts_with(existing.as_str()))
        {
            return Err(ServiceError::MountInvalid(format!(
                "path is already in use at {path}"
            )));
        }
        let uuid = uuid::Uuid::new_v4().to_string();
        let info = MountInfo {
            path: path.clone(),
            kind: kind.to_owned(),
            description: description.to_owned(),
            accessor: format!("transit_{}", &uuid[..8]),
            uuid,
            default_lease_ttl: 0,
            max_lease_ttl: 0,
        };
        let engine = Engine::open(
            self.storage.clone(),
            &format!("logical/{}/", info.uuid),
            self.options.clone(),
        )?;
        let mut next = (*current).clone();
        next.insert(
            path,
            Arc::new(Mount {
                info: info.clone(),
                engine: Arc::new(engine),
            }),
        );
        self.persist(&next)?;
        self.table.store(Arc::new(next));
        Ok(info)
    }

    /// Applies `sys/mounts/:path/tune` changes.
    pub fn tune(&self, path: &str, tune: &MountTune) -> Result<(), ServiceError> {
        let _write = self.write.lock();
        let current = self.table.load_full();
        let Some(mount) = current.get(path) else {
            return Err(ServiceError::MountInvalid(format!(
                "No secret engine mount at {path}"
            )));
        };
        let mut info = mount.info.clone();
        if let Some(description) = &tune.description {
            info.description.clone_from(description);
        }
        if let Some(ttl) = tune.default_lease_ttl {
            info.default_lease_ttl = ttl;
        }
        if let Some(ttl) = tune.max_lease_ttl {
            info.max_lease_ttl = ttl;
        }
        let mut next = (*current).clone();
        next.insert(
            path.to_owned(),
            Arc::new(Mount {
                info,
                engine: mount.engine.clone(),
            }),
        );
        self.persist(&next)?;
        self.table.store(Arc::new(next));
        Ok(())
    }

    /// Disables the mount at `path` and deletes its keys.
    pub fn disable(&self, path: &str) -> Result<(), ServiceError> {
        let path = normalize_path(path);
        let _write = self.write.lock();
        let current = self.table.load_full();
        let Some(mount) = current.get(&path) else {
            // Vault answers 204 for a path that is not mounted.
            return Ok(());
        };
        let mut next = (*current).clone();
        next.remove(&path);
        self.persist(&next)?;
        self.table.store(Arc::new(next));
        delete_tree(&*self.storage, &format!("logical/{}/", mount.info.uuid))?;
        Ok(())
    }

    fn persist(&self, table: &BTreeMap<String, Arc<Mount>>) -> Result<(), ServiceError> {
        let infos: Vec<&MountInfo> = table.values().map(|m| &m.info).collect();
        let mut bytes = Vec::new();
        // Serializing plain structs into a Vec cannot fail.
        let _ = ciborium::into_writer(&infos, &mut bytes);
        self.storage.put(MOUNTS_PATH, &bytes)?;
        Ok(())
    }

    /// Flushes the encryption counters of every engine.
    pub fn flush_counters(&self) {
        for mount in self.table.load().values() {
            if let Err(error) = mount.engine.flush_counters() {
                tracing::error!(mount = %mount.info.path, %error, "flushing encryption counters failed");
            }
        }
    }

    /// Rotates keys whose auto-rotation period has elapsed, in every mount.
    pub fn rotate_due_keys(&self) {
        let now = crate::keyring::now_unix_nanos();
        for mount in self.table.load().values() {
            match mount.engine.rotate_due_keys(now) {
                Ok(rotated) if !rotated.is_empty() => {
                    tracing::info!(mount = %mount.info.path, keys = ?rotated, "auto-rotated keys");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(mount = %mount.info.path, %error, "auto-rotation failed")
                }
            }
        }
    }
}

fn delete_tree(storage: &dyn Storage, prefix: &str) -> Result<(), ServiceError> {
    for child in storage.list(prefix)? {
        let path = format!("{prefix}{child}");
        if child.ends_with('/') {
            delete_tree(storage, &path)?;
        } else {
            storage.delete(&path)?;
        }
    }
    Ok(())
}
