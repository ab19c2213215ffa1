//! The audit subsystem: who used which key, when, how, and proof that the
//! record is whole.
//!
//! It owns the audit devices (`file` and `stdout`, several at once), what an
//! entry says ([`entry`]), how sensitive values are hashed ([`hasher`]), the
//! hash chain and signed checkpoints ([`chain`]), and the offline checks and
//! reports that read a log back ([`verify`], [`report`]). The service layer
//! drives it: one [`Frame`] per request, a `request` entry once the request
//! is authorized and a `response` entry when it is answered.
//!
//! **Fail closed.** When devices are enabled and none of them can write an
//! entry, the request is refused. An operation that changes state (a key is
//! created, rotated, configured, deleted, a token or policy is written) waits
//! until its request entry is written before it runs. A read-only crypto
//! operation (encrypt, decrypt, sign, ...) changes nothing, so its request
//! entry (rendered, and timed, when it is authorized) is written together
//! with its response entry, in one write, and the result is released only
//! once both are written. Either way no result leaves the server unaudited.
//!
//! A request is audited by the devices enabled when it arrived (its frame
//! renders its data for each of them then); a device disabled while it runs
//! is left out of its response entry, and one enabled meanwhile starts with
//! the next request.

pub mod chain;
pub mod data;
mod device;
pub mod entry;
mod error;
pub mod hasher;
pub mod json;
pub mod report;
mod store;
mod syncer;
pub mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

pub use chain::CheckpointSigner;
pub use data::{AuditData, DataFacts};
pub use device::Device;
pub use entry::{AuthView, CipherdView, RequestView, ResponseView};
pub use error::AuditError;

use crate::crypto::SecretBytes;
use crate::storage::Storage;
use chain::SealableBody;
use device::Waiter;
use store::DeviceRecord;

/// A device to enable, from the API or the server's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Mount path (a trailing `/` is added).
    pub path: String,
    /// `file` or `stdout`.
    pub kind: String,
    /// Free text.
    pub description: String,
    /// Options (`file_path`, `fsync`, ...).
    pub options: BTreeMap<String, String>,
    /// Vault's `local` flag.
    pub local: bool,
}

/// A device as `sys/audit` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Mount path with trailing `/`.
    pub path: String,
    /// `file` or `stdout`.
    pub kind: String,
    /// Free text.
    pub description: String,
    /// Options.
    pub options: BTreeMap<String, String>,
    /// Vault's `local` flag.
    pub local: bool,
}

/// The enabled devices of one unsealed server.
pub struct AuditLog {
    storage: Arc<dyn Storage>,
    signer: Arc<CheckpointSigner>,
    devices: ArcSwap<Vec<Arc<Device>>>,
    records: Mutex<Vec<DeviceRecord>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("devices", &self.devices.load().len())
            .finish_non_exhaustive()
    }
}

/// Normalizes a device path: no leading `/`, one trailing `/`.
fn device_path(path: &str) -> Result<String, AuditError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(AuditError::invalid("audit device path is empty"));
    }
    if trimmed == "signing-key" {
        return Err(AuditError::invalid(
            "\"signing-key\" is reserved: sys/audit/signing-key serves the checkpoint public key",
        ));
    }
    if !trimmed
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return Err(AuditError::invalid(
            "audit device paths may use letters, digits, '-', '_', '.' and '/'",
        ));
    }
    Ok(format!("{trimmed}/"))
}

impl AuditLog {
    /// Loads the device table and the signing key from `storage` (creating
    /// the key on first use), enables `declared` devices that are not enabled
    /// yet (the server's `--audit-*` flags), and starts every device.
    pub fn open(storage: Arc<dyn Storage>, declared: &[DeviceSpec]) -> Result<Self, AuditError> {
        let seed = store::signing_seed(&storage)?;
        let signer = Arc::new(
            CheckpointSigner::from_seed(&seed)
                .ok_or_else(|| AuditError::invalid("stored audit signing key is corrupt"))?,
        );
        let mut records = store::load_devices(&storage)?;
        let mut changed = false;
        for spec in declared {
            let path = device_path(&spec.path)?;
            if !records.iter().any(|r| r.path == path) {
                device::DeviceSettings::parse(&spec.kind, &spec.options)?;
                records.push(DeviceRecord::new(
                    path,
                    spec.kind.clone(),
                    spec.description.clone(),
                    spec.options.clone(),
                    spec.local,
                ));
                changed = true;
            }
        }
        if changed {
            store::save_devices(&storage, &records)?;
        }
        let mut devices = Vec::with_capacity(records.len());
        for record in &records {
            devices.push(Arc::new(start(record, &signer)?));
        }
        Ok(Self {
            storage,
            signer,
            devices: ArcSwap::from_pointee(devices),
            records: Mutex::new(records),
        })
    }

    /// The enabled devices, by path.
    pub fn list(&self) -> Vec<DeviceInfo> {
        self.devices
            .load()
            .iter()
            .map(|device| DeviceInfo {
                path: device.path.clone(),
                kind: device.kind.clone(),
                description: device.description.clone(),
                options: device.options.clone(),
                local: self
                    .records
                    .lock()
                    .iter()
                    .any(|r| r.path == device.path && r.local),
            })
            .collect()
    }

    /// Enables a device: validates its options, opens its output, stores it.
    pub fn enable(&self, spec: &DeviceSpec) -> Result<(), AuditError> {
        let path = device_path(&spec.path)?;
        let mut records = self.records.lock();
        if records.iter().any(|r| r.path == path) {
            return Err(AuditError::PathInUse);
        }
        let record = DeviceRecord::new(
            path,
            spec.kind.clone(),
            spec.description.clone(),
            spec.options.clone(),
            spec.local,
        );
        let device = Arc::new(start(&record, &self.signer)?);
        let mut next = records.clone();
        next.push(record);
        if let Err(error) = store::save_devices(&self.storage, &next) {
            device.stop();
            return Err(error);
        }
        *records = next;
        let mut devices = Vec::clone(&self.devices.load());
        devices.push(device);
        self.devices.store(Arc::new(devices));
        Ok(())
    }

    /// Disables the device at `path` (writing its final checkpoint). Disabling
    /// a path with no device is not an error, as in Vault.
    pub fn disable(&self, path: &str) -> Result<(), AuditError> {
        let path = device_path(path)?;
        let mut records = self.records.lock();
        if !records.iter().any(|r| r.path == path) {
            return Ok(());
        }
        let next: Vec<DeviceRecord> = records.iter().filter(|r| r.path != path).cloned().collect();
        store::save_devices(&self.storage, &next)?;
        *records = next;
        let (gone, kept): (Vec<_>, Vec<_>) = self
            .devices
            .load()
            .iter()
            .cloned()
            .partition(|d| d.path == path);
        self.devices.store(Arc::new(kept));
        for device in gone {
            device.stop();
        }
        Ok(())
    }

    /// `sys/audit-hash/:path`: what the device at `path` writes for `input`.
    pub fn hash(&self, path: &str, input: &str) -> Result<String, AuditError> {
        let path = device_path(path)?;
        self.devices
            .load()
            .iter()
            .find(|d| d.path == path)
            .map(|d| d.hasher.hash_str(input))
            .ok_or(AuditError::NoSuchDevice)
    }

    /// The checkpoint public key, base64 (`sys/audit/signing-key`).
    pub fn signing_key(&self) -> (String, String) {
        (self.signer.public_key_base64(), self.signer.key_id())
    }

    /// The devices a new request's frame writes to (none: nothing is
    /// audited). A guard, not a clone: one atomic load per request.
    pub fn devices(&self) -> arc_swap::Guard<Arc<Vec<Arc<Device>>>> {
        self.devices.load()
    }

    /// Renders the request entry of `frame` for each of its devices. For a
    /// request that changes state it is written now, and this returns once at
    /// least one device wrote it (else `Unavailable`); for a read-only one it
    /// is kept in the frame and written with the response entry, in the same
    /// write, before the result is released.
    pub fn log_request(&self, frame: &Frame) -> Result<(), AuditError> {
        let mut state = frame.state.lock();
        if state.request_logged || state.devices.is_empty() {
            return Ok(());
        }
        state.request_logged = true;
        let time = entry::now_rfc3339();
        let wait = !state.read_only;
        let mut blocking = Vec::new();
        let FrameState {
            request,
            auth,
            cipherd,
            devices,
            ..
        } = &mut *state;
        for target in devices.iter_mut() {
            let device = &target.device;
            let head = entry::render_head(
                auth,
                request,
                cipherd.mount.as_deref(),
                target.data.as_deref(),
                &device.hasher,
                &device.identities,
                device.render,
            );
            let body =
                entry::render_entry("request", &time, &head, None, cipherd, request.transport);
            target.head = Some(head);
            if wait {
                let (answer, heard) = std::sync::mpsc::sync_channel(1);
                device.submit(vec![SealableBody::new(body)], Waiter::Blocking(answer));
                blocking.push(heard);
            } else {
                // Written together with the response entry, in one write,
                // before the result is released.
                target.deferred = Some(SealableBody::new(body));
            }
        }
        drop(state);
        if wait {
            let written = blocking
                .into_iter()
                .filter(|heard| heard.recv().unwrap_or(false))
                .count();
            if written == 0 {
                return Err(AuditError::Unavailable);
            }
        }
        Ok(())
    }

    /// Writes the response entry of `frame` (with its deferred request entry,
    /// or its request entry if the request never reached an authorization
    /// check) and waits until some device has written every entry of the
    /// request.
    pub async fn log_response(
        &self,
        frame: &Frame,
        response: ResponseView<'_>,
    ) -> Result<(), AuditError> {
        self.render_response(frame, response)?.write().await
    }

    /// Renders the response entry of `frame` for each of its devices (and
    /// its request entry, written now if it changes state), ready to be
    /// written. A synchronous step of its own so that a large batch's
    /// entries are rendered and hashed on the blocking pool, not on the
    /// connection's runtime.
    pub fn render_response(
        &self,
        frame: &Frame,
        response: ResponseView<'_>,
    ) -> Result<ResponseEntries, AuditError> {
        {
            let mut state = frame.state.lock();
            // A device disabled while the request ran (the request may be
            // the one that disabled it) has written its final checkpoint:
            // the request's entries go to the devices still enabled.
            let enabled = self.devices.load();
            state
                .devices
                .retain(|target| enabled.iter().any(|d| Arc::ptr_eq(d, &target.device)));
            if state.devices.is_empty() {
                return Ok(ResponseEntries(Vec::new()));
            }
            // A request that never reached an authorization check has already
            // run: its request entry is written with the response, not before.
            if !state.request_logged {
                state.read_only = true;
            }
        }
        self.log_request(frame)?;
        let time = entry::now_rfc3339();
        let mut writes = Vec::new();
        {
            let mut state = frame.state.lock();
            let FrameState {
                request,
                cipherd,
                devices,
                ..
            } = &mut *state;
            // The data first, for every device: the first rendering also
            // collects the key versions the `cipherd` object names.
            let mut facts = Some(&mut cipherd.facts);
            let rendered: Vec<Option<String>> = devices
                .iter()
                .map(|target| {
                    response.data.map(|data| {
                        let mut text = String::with_capacity(256);
                        data.write_protected(&target.device.hasher, &mut text, facts.take());
                        text
                    })
                })
                .collect();
            for (target, data) in devices.iter_mut().zip(rendered) {
                let head = target.head.as_deref().unwrap_or_default();
                let body = entry::render_entry(
                    "response",
                    &time,
                    head,
                    Some((&response, data.as_deref())),
                    cipherd,
                    request.transport,
                );
                let mut bodies = Vec::with_capacity(2);
                bodies.extend(target.deferred.take());
                bodies.push(SealableBody::new(body));
                writes.push((target.device.clone(), bodies));
            }
        }
        Ok(ResponseEntries(writes))
    }

    /// Stops every device, each with a final checkpoint (on seal and shutdown).
    pub fn close(&self) {
        let devices = self.devices.swap(Arc::new(Vec::new()));
        for device in devices.iter() {
            device.stop();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// A request's last entries, rendered for each device and not yet written.
#[derive(Debug)]
pub struct ResponseEntries(Vec<(Arc<Device>, Vec<SealableBody>)>);

impl ResponseEntries {
    /// Writes them; `Ok` once some device wrote all of them (or when no
    /// device audits the request).
    pub async fn write(self) -> Result<(), AuditError> {
        let audited = !self.0.is_empty();
        let mut written = 0;
        for (device, bodies) in self.0 {
            written += usize::from(device.write(bodies).await);
        }
        Self::outcome(audited, written)
    }

    /// [`ResponseEntries::write`] for a thread that may block (the
    /// blocking pool).
    pub fn write_blocking(self) -> Result<(), AuditError> {
        let audited = !self.0.is_empty();
        let written = self
            .0
            .into_iter()
            .map(|(device, bodies)| device.write_blocking(bodies))
            .filter(|written| *written)
            .count();
        Self::outcome(audited, written)
    }

    fn outcome(audited: bool, written: usize) -> Result<(), AuditError> {
        if !audited || written > 0 {
            Ok(())
        } else {
            Err(AuditError::Unavailable)
        }
    }
}

fn start(record: &DeviceRecord, signer: &Arc<CheckpointSigner>) -> Result<Device, AuditError> {
    let salt: SecretBytes = record.salt()?;
    Device::start(
        &record.path,
        &record.kind,
        &record.description,
        record.options.clone(),
        &salt,
        signer.clone(),
    )
}

/// One request's audit state, from the adapter through the service.
pub struct Frame {
    state: Mutex<FrameState>,
}

struct FrameState {
    request: RequestView,
    auth: AuthView,
    cipherd: CipherdView,
    request_logged: bool,
    /// True for operations that change nothing (their request entry need not
    /// be written before they run).
    read_only: bool,
    /// The devices enabled when the request arrived, each with what it has
    /// rendered of the request so far.
    devices: Vec<FrameDevice>,
}

/// What one device has rendered of a request.
struct FrameDevice {
    device: Arc<Device>,
    /// The request's data as this device shows it (rendered on arrival, so
    /// the adapter keeps no copy of it).
    data: Option<String>,
    /// `auth` and `request`, shared by both entries (rendered at the
    /// request entry).
    head: Option<String>,
    /// The request entry of a read-only request, written with the response.
    deferred: Option<SealableBody>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").finish_non_exhaustive()
    }
}

impl Frame {
    /// A frame for `request` with its `data`, written to `devices`; `token`
    /// is the client token as sent.
    pub fn new(
        mut request: RequestView,
        data: Option<&dyn AuditData>,
        token: Option<&str>,
        devices: &[Arc<Device>],
    ) -> Self {
        let mut cipherd = CipherdView::default();
        let mut facts = Some(&mut cipherd.facts);
        let devices = devices
            .iter()
            .map(|device| FrameDevice {
                device: device.clone(),
                data: data.map(|data| {
                    let mut text = String::with_capacity(256);
                    data.write_protected(&device.hasher, &mut text, facts.take());
                    text
                }),
                head: None,
                deferred: None,
            })
            .collect();
        if request.id.is_empty() {
            request.id = new_request_id();
        }
        Self {
            state: Mutex::new(FrameState {
                request,
                auth: AuthView {
                    client_token: token.map(str::to_owned),
                    ..AuthView::default()
                },
                cipherd,
                request_logged: false,
                read_only: false,
                devices,
            }),
        }
    }

    /// The client token as sent.
    pub fn client_token(&self) -> Option<String> {
        self.state.lock().auth.client_token.clone()
    }

    /// The request id.
    pub fn request_id(&self) -> String {
        self.state.lock().request.id.clone()
    }

    /// Whether the request entry was written (or queued) already.
    pub fn request_logged(&self) -> bool {
        self.state.lock().request_logged
    }

    /// Records who the token belongs to and whether the ACL allowed the request.
    pub fn set_auth(&self, update: impl FnOnce(&mut AuthView)) {
        update(&mut self.state.lock().auth);
    }

    /// Records what the request touches: the path it was checked as, the
    /// operation, the mount and key, and whether it changes nothing.
    pub fn set_target(
        &self,
        path: &str,
        operation: &'static str,
        mount: Option<&str>,
        key: Option<&str>,
        read_only: bool,
    ) {
        let mut state = self.state.lock();
        if state.request.path.is_empty() {
            path.clone_into(&mut state.request.path);
        }
        state.request.operation = operation;
        state.cipherd.mount = mount.map(str::to_owned);
        state.cipherd.key = key.map(str::to_owned);
        state.read_only = read_only;
    }
}

/// A fresh UUID v4 from the thread-local CSPRNG: an id, not a secret, and
/// `Uuid::new_v4` would cost a `getrandom` system call per request.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    crate::crypto::random::fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}
