//! The transit path table (reference §3): which paths exist under a mount, the
//! methods each accepts, the fields each declares, and the operation the ACL
//! sees. Mirrors Vault's anchored patterns, including their order: the
//! `keys/:name/<action>` paths need two segments, so a key named `rotate` is
//! still `keys/rotate`.

use crate::service::TransitOp;

use super::{Call, Operation, Reply, Spec, crypt, is_key_name, keys, sign, util};

/// A transit path, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route<'a> {
    /// `keys` (LIST).
    ListKeys,
    /// `keys/:name` (GET, POST, DELETE).
    Key(&'a str),
    /// `keys/:name/config`.
    KeyConfig(&'a str),
    /// `keys/:name/rotate`.
    KeyRotate(&'a str),
    /// `keys/:name/trim`.
    KeyTrim(&'a str),
    /// `keys/:name/import`.
    KeyImport(&'a str),
    /// `keys/:name/import_version`.
    KeyImportVersion(&'a str),
    /// `wrapping_key`.
    WrappingKey,
    /// `export/:type/:name(/:version)`.
    Export {
        /// Export type segment (checked by the handler).
        kind: &'a str,
        /// Key name.
        name: &'a str,
        /// Optional version segment.
        version: Option<&'a str>,
    },
    /// `backup/:name`.
    Backup(&'a str),
    /// `restore(/:name)`.
    Restore(Option<&'a str>),
    /// `config/keys`.
    ConfigKeys,
    /// `cache-config`.
    CacheConfig,
    /// `encrypt/:name`.
    Encrypt(&'a str),
    /// `decrypt/:name`.
    Decrypt(&'a str),
    /// `rewrap/:name`.
    Rewrap(&'a str),
    /// `datakey/:type/:name`.
    Datakey {
        /// `plaintext` or `wrapped` (checked by the handler).
        kind: &'a str,
        /// Key name.
        name: &'a str,
    },
    /// `random(/:source)(/:bytes)`.
    Random {
        /// First segment: a source, or a byte count.
        source: Option<&'a str>,
        /// Second segment: a byte count.
        bytes: Option<&'a str>,
    },
    /// `hash(/:algorithm)`.
    Hash(Option<&'a str>),
    /// `hmac/:name(/:algorithm)`.
    Hmac(&'a str, Option<&'a str>),
    /// `sign/:name(/:hash_algorithm)`.
    Sign(&'a str, Option<&'a str>),
    /// `verify/:name(/:hash_algorithm)`.
    Verify(&'a str, Option<&'a str>),
}

const NAME: &[&str] = &["name"];
const NAME_ALG: &[&str] = &["name", "urlalgorithm"];

const KEY_FIELDS: &[&str] = &[
    "allow_plaintext_backup",
    "auto_rotate_period",
    "context",
    "convergent_encryption",
    "derived",
    "exportable",
    "key_size",
    "managed_key_id",
    "managed_key_name",
    "type",
];
const SIGN_FIELDS: &[&str] = &[
    "algorithm",
    "batch_input",
    "context",
    "hash_algorithm",
    "input",
    "key_version",
    "marshaling_algorithm",
    "prehashed",
    "salt_length",
    "signature_algorithm",
];
const VERIFY_FIELDS: &[&str] = &[
    "algorithm",
    "batch_input",
    "context",
    "hash_algorithm",
    "hmac",
    "input",
    "marshaling_algorithm",
    "prehashed",
    "salt_length",
    "signature",
    "signature_algorithm",
];

/// Splits off the first segment; `None` for the empty rest.
fn split(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((head, tail)) => (head, Some(tail)),
        None => (rest, None),
    }
}

/// A non-empty remainder (Vault's optional `(/(?P<x>.+))?` capture).
fn optional(tail: Option<&str>) -> Result<Option<&str>, ()> {
    match tail {
        None => Ok(None),
        Some("") => Err(()),
        Some(rest) => Ok(Some(rest)),
    }
}

/// A key name segment: `Some` only when it matches Vault's pattern.
fn name(segment: &str) -> Option<&str> {
    is_key_name(segment).then_some(segment)
}

impl<'a> Route<'a> {
    /// Parses the path under the mount; `None` = no route (404).
    pub(super) fn parse(rest: &'a str) -> Option<Self> {
        let (head, tail) = split(rest);
        Some(match head {
            "keys" => match tail {
                None => Self::ListKeys,
                Some(tail) => match split(tail) {
                    (key, None) => Self::Key(name(key)?),
                    (key, Some(action)) => {
                        let key = name(key)?;
                        match action {
                            "config" => Self::KeyConfig(key),
                            "rotate" => Self::KeyRotate(key),
                            "trim" => Self::KeyTrim(key),
                            "import" => Self::KeyImport(key),
                            "import_version" => Self::KeyImportVersion(key),
                            _ => return None,
                        }
                    }
                },
            },
            "encrypt" | "decrypt" | "rewrap" | "backup" => {
                let key = name(tail?)?;
                match head {
                    "encrypt" => Self::Encrypt(key),
                    "decrypt" => Self::Decrypt(key),
                    "rewrap" => Self::Rewrap(key),
                    _ => Self::Backup(key),
                }
            }
            "datakey" => {
                let (kind, key) = split(tail?);
                Self::Datakey {
                    kind: name(kind)?,
                    name: name(key?)?,
                }
            }
            "export" => {
                let (kind, rest) = split(tail?);
                let (key, version) = split(rest?);
                Self::Export {
                    kind: name(kind)?,
                    name: name(key)?,
                    version: optional(version).ok()?,
                }
            }
            "hmac" | "sign" | "verify" => {
                let (key, algorithm) = split(tail?);
                let key = name(key)?;
                let algorithm = optional(algorithm).ok()?;
                match head {
                    "hmac" => Self::Hmac(key, algorithm),
                    "sign" => Self::Sign(key, algorithm),
                    _ => Self::Verify(key, algorithm),
                }
            }
            "hash" => Self::Hash(optional(tail).ok()?),
            "random" => match tail {
                None => Self::Random {
                    source: None,
                    bytes: None,
                },
                Some(tail) => {
                    let (source, bytes) = split(tail);
                    Self::Random {
                        source: Some(name(source)?),
                        bytes: optional(bytes).ok()?,
                    }
                }
            },
            "restore" => Self::Restore(optional(tail).ok()?),
            "wrapping_key" if tail.is_none() => Self::WrappingKey,
            "cache-config" if tail.is_none() => Self::CacheConfig,
            "config" if tail == Some("keys") => Self::ConfigKeys,
            _ => return None,
        })
    }

    /// Whether the path implements `operation` (else 405).
    pub(super) fn allows(self, operation: Operation) -> bool {
        match self {
            Self::ListKeys => operation == Operation::List,
            Self::Key(_) => matches!(
                operation,
                Operation::Read | Operation::Update | Operation::Delete
            ),
            Self::ConfigKeys | Self::CacheConfig => {
                matches!(operation, Operation::Read | Operation::Update)
            }
            Self::WrappingKey | Self::Export { .. } | Self::Backup(_) => {
                operation == Operation::Read
            }
            Self::KeyConfig(_)
            | Self::KeyRotate(_)
            | Self::KeyTrim(_)
            | Self::KeyImport(_)
            | Self::KeyImportVersion(_)
            | Self::Restore(_)
            | Self::Encrypt(_)
            | Self::Decrypt(_)
            | Self::Rewrap(_)
            | Self::Datakey { .. }
            | Self::Random { .. }
            | Self::Hash(_)
            | Self::Hmac(..)
            | Self::Sign(..)
            | Self::Verify(..) => operation == Operation::Update,
        }
    }

    /// The fields the path declares.
    pub(super) fn spec(self) -> Spec {
        let (known, captures): (&'static [&'static str], &'static [&'static str]) = match self {
            Self::ListKeys => (&["after", "limit"], &[]),
            Self::Key(_) => (KEY_FIELDS, NAME),
            Self::KeyConfig(_) => (
                &[
                    "allow_plaintext_backup",
                    "auto_rotate_period",
                    "deletion_allowed",
                    "exportable",
                    "min_decryption_version",
                    "min_encryption_version",
                ],
                NAME,
            ),
            Self::KeyRotate(_) => (&["managed_key_id", "managed_key_name"], NAME),
            Self::KeyTrim(_) => (&["min_available_version"], NAME),
            Self::KeyImport(_) => (
                &[
                    "allow_plaintext_backup",
                    "allow_rotation",
                    "auto_rotate_period",
                    "ciphertext",
                    "context",
                    "convergent_encryption",
                    "derived",
                    "exportable",
                    "hash_function",
                    "public_key",
                    "type",
                ],
                NAME,
            ),
            Self::KeyImportVersion(_) => (
                &["ciphertext", "hash_function", "public_key", "version"],
                NAME,
            ),
            Self::WrappingKey => (&[], &[]),
            Self::Export { .. } => (&[], &["name", "type", "version"]),
            Self::Backup(_) => (&[], NAME),
            Self::Restore(_) => (&["backup", "force"], NAME),
            Self::ConfigKeys => (&["disable_upsert"], &[]),
            Self::CacheConfig => (&["size"], &[]),
            Self::Encrypt(_) => (
                &[
                    "associated_data",
                    "batch_input",
                    "context",
                    "convergent_encryption",
                    "key_version",
                    "partial_failure_response_code",
                    "plaintext",
                    "type",
                ],
                NAME,
            ),
            Self::Decrypt(_) => (
                &[
                    "associated_data",
                    "batch_input",
                    "ciphertext",
                    "context",
                    "partial_failure_response_code",
                ],
                NAME,
            ),
            Self::Rewrap(_) => (
                &["batch_input", "ciphertext", "context", "key_version"],
                NAME,
            ),
            Self::Datakey { .. } => (
                &["associated_data", "bits", "context", "key_version"],
                &["name", "plaintext"],
            ),
            Self::Random { .. } => (&["bytes", "format"], &["source", "urlbytes"]),
            Self::Hash(_) => (&["algorithm", "format", "input"], &["urlalgorithm"]),
            Self::Hmac(..) => (
                &["algorithm", "batch_input", "input", "key_version"],
                NAME_ALG,
            ),
            Self::Sign(..) => (SIGN_FIELDS, NAME_ALG),
            Self::Verify(..) => (VERIFY_FIELDS, NAME_ALG),
        };
        Spec { known, captures }
    }

    /// Runs the handler (the method was checked by [`Route::allows`]).
    pub(super) fn dispatch(self, call: &Call<'_>, operation: Operation) -> Reply {
        match self {
            Self::ListKeys => keys::list(call),
            Self::Key(name) => match operation {
                Operation::Read => keys::read(call, name),
                Operation::Delete => keys::delete(call, name),
                _ => keys::create(call, name),
            },
            Self::KeyConfig(name) => keys::configure(call, name),
            Self::KeyRotate(name) => keys::rotate(call, name),
            Self::KeyTrim(name) => keys::trim(call, name),
            Self::KeyImport(name) => keys::import(call, name),
            Self::KeyImportVersion(name) => keys::import_version(call, name),
            Self::WrappingKey => keys::wrapping_key(call),
            Self::Export {
                kind,
                name,
                version,
            } => keys::export(call, kind, name, version),
            Self::Backup(name) => keys::backup(call, name),
            Self::Restore(name) => keys::restore(call, name),
            Self::ConfigKeys => util::config_keys(call, operation),
            Self::CacheConfig => util::cache_config(call, operation),
            Self::Encrypt(name) => crypt::encrypt(call, name),
            Self::Decrypt(name) => crypt::decrypt(call, name),
            Self::Rewrap(name) => crypt::rewrap(call, name),
            Self::Datakey { kind, name } => crypt::datakey(call, kind, name),
            Self::Random { source, bytes } => util::random(call, source, bytes),
            Self::Hash(algorithm) => util::hash(call, algorithm),
            Self::Hmac(name, algorithm) => sign::hmac(call, name, algorithm),
            Self::Sign(name, algorithm) => sign::sign(call, name, algorithm),
            Self::Verify(name, algorithm) => sign::verify(call, name, algorithm),
        }
    }

    /// The operation the service authorizes (config paths read or write).
    pub(super) fn op(self, operation: Operation) -> TransitOp<'a> {
        match self {
            Self::ListKeys => TransitOp::ListKeys,
            Self::Key(name) => match operation {
                Operation::Read => TransitOp::ReadKey(name),
                Operation::Delete => TransitOp::DeleteKey(name),
                _ => TransitOp::CreateKey(name),
            },
            Self::KeyConfig(name) => TransitOp::ConfigureKey(name),
            Self::KeyRotate(name) => TransitOp::RotateKey(name),
            Self::KeyTrim(name) => TransitOp::TrimKey(name),
            Self::KeyImport(name) | Self::KeyImportVersion(name) => TransitOp::ImportKey(name),
            Self::WrappingKey => TransitOp::WrappingKey,
            Self::Export { kind, name, .. } => TransitOp::Export(kind, name),
            Self::Backup(name) => TransitOp::Backup(name),
            Self::Restore(name) => TransitOp::Restore(name),
            Self::ConfigKeys | Self::CacheConfig => match operation {
                Operation::Read => TransitOp::ReadConfig,
                _ => TransitOp::WriteConfig,
            },
            Self::Encrypt(name) => TransitOp::Encrypt(name),
            Self::Decrypt(name) => TransitOp::Decrypt(name),
            Self::Rewrap(name) => TransitOp::Rewrap(name),
            Self::Datakey { kind, name } => TransitOp::Datakey(kind, name),
            Self::Random { .. } => TransitOp::Random,
            Self::Hash(_) => TransitOp::Hash,
            Self::Hmac(name, _) => TransitOp::Hmac(name),
            Self::Sign(name, _) => TransitOp::Sign(name),
            Self::Verify(name, _) => TransitOp::Verify(name),
        }
    }
}

/// The OpenAPI description of the path table (`openapi/cipherd.json`), which
/// `tests/openapi.rs` keeps in sync with [`Route::parse`] and [`Route::allows`].
impl Route<'_> {
    /// The OpenAPI path template of this route, mount included
    /// (`{mount}`). A route with optional segments has one template per shape.
    pub(crate) fn template(&self) -> &'static str {
        match self {
            Self::ListKeys => "/{mount}/keys",
            Self::Key(_) => "/{mount}/keys/{name}",
            Self::KeyConfig(_) => "/{mount}/keys/{name}/config",
            Self::KeyRotate(_) => "/{mount}/keys/{name}/rotate",
            Self::KeyTrim(_) => "/{mount}/keys/{name}/trim",
            Self::KeyImport(_) => "/{mount}/keys/{name}/import",
            Self::KeyImportVersion(_) => "/{mount}/keys/{name}/import_version",
            Self::WrappingKey => "/{mount}/wrapping_key",
            Self::Export { version: None, .. } => "/{mount}/export/{type}/{name}",
            Self::Export {
                version: Some(_), ..
            } => "/{mount}/export/{type}/{name}/{version}",
            Self::Backup(_) => "/{mount}/backup/{name}",
            Self::Restore(None) => "/{mount}/restore",
            Self::Restore(Some(_)) => "/{mount}/restore/{name}",
            Self::ConfigKeys => "/{mount}/config/keys",
            Self::CacheConfig => "/{mount}/cache-config",
            Self::Encrypt(_) => "/{mount}/encrypt/{name}",
            Self::Decrypt(_) => "/{mount}/decrypt/{name}",
            Self::Rewrap(_) => "/{mount}/rewrap/{name}",
            Self::Datakey { .. } => "/{mount}/datakey/{plaintext}/{name}",
            Self::Random {
                source: None,
                bytes: None,
            } => "/{mount}/random",
            Self::Random {
                source: Some(_),
                bytes: None,
            } => "/{mount}/random/{source}",
            Self::Random { bytes: Some(_), .. } => "/{mount}/random/{source}/{urlbytes}",
            Self::Hash(None) => "/{mount}/hash",
            Self::Hash(Some(_)) => "/{mount}/hash/{urlalgorithm}",
            Self::Hmac(_, None) => "/{mount}/hmac/{name}",
            Self::Hmac(_, Some(_)) => "/{mount}/hmac/{name}/{urlalgorithm}",
            Self::Sign(_, None) => "/{mount}/sign/{name}",
            Self::Sign(_, Some(_)) => "/{mount}/sign/{name}/{urlalgorithm}",
            Self::Verify(_, None) => "/{mount}/verify/{name}",
            Self::Verify(_, Some(_)) => "/{mount}/verify/{name}/{urlalgorithm}",
        }
    }

    /// The methods [`Route::allows`], as the OpenAPI document names them:
    /// `list` is LIST (documented as `get` with `?list=true`), `post` stands
    /// for POST and PUT.
    pub(crate) fn methods(self) -> Vec<&'static str> {
        [
            (Operation::Read, "get"),
            (Operation::Update, "post"),
            (Operation::Delete, "delete"),
            (Operation::List, "list"),
            (Operation::Head, "head"),
        ]
        .into_iter()
        .filter(|(operation, _)| self.allows(*operation))
        .map(|(_, method)| method)
        .collect()
    }
}

/// Declares the sample routes, one or more per arm. The arms also form an
/// exhaustive `match` over [`Route`] (no catch-all), so a new variant, or a
/// new shape of an optional segment, does not compile until it has a sample
/// here; each sample must match its own arm.
macro_rules! samples {
    ($($pattern:pat => [$($sample:expr),+ $(,)?]),+ $(,)?) => {
        /// One sample route per path shape.
        fn samples() -> Vec<Route<'static>> {
            fn exhaustive(route: Route<'_>) {
                match route {
                    $($pattern => {})+
                }
            }
            let mut all = Vec::new();
            $($(
                let sample: Route<'static> = $sample;
                assert!(matches!(sample, $pattern), "{sample:?} is listed under the wrong arm");
                exhaustive(sample);
                all.push(sample);
            )+)+
            all
        }
    };
}

samples! {
    Route::ListKeys => [Route::ListKeys],
    Route::Key(_) => [Route::Key("k")],
    Route::KeyConfig(_) => [Route::KeyConfig("k")],
    Route::KeyRotate(_) => [Route::KeyRotate("k")],
    Route::KeyTrim(_) => [Route::KeyTrim("k")],
    Route::KeyImport(_) => [Route::KeyImport("k")],
    Route::KeyImportVersion(_) => [Route::KeyImportVersion("k")],
    Route::WrappingKey => [Route::WrappingKey],
    Route::Export { version: None, .. } => [Route::Export { kind: "public-key", name: "k", version: None }],
    Route::Export { version: Some(_), .. } => [Route::Export { kind: "public-key", name: "k", version: Some("1") }],
    Route::Backup(_) => [Route::Backup("k")],
    Route::Restore(None) => [Route::Restore(None)],
    Route::Restore(Some(_)) => [Route::Restore(Some("k"))],
    Route::ConfigKeys => [Route::ConfigKeys],
    Route::CacheConfig => [Route::CacheConfig],
    Route::Encrypt(_) => [Route::Encrypt("k")],
    Route::Decrypt(_) => [Route::Decrypt("k")],
    Route::Rewrap(_) => [Route::Rewrap("k")],
    Route::Datakey { .. } => [Route::Datakey { kind: "plaintext", name: "k" }],
    Route::Random { source: None, bytes: None } => [Route::Random { source: None, bytes: None }],
    Route::Random { source: Some(_), bytes: None } => [Route::Random { source: Some("all"), bytes: None }],
    Route::Random { source: _, bytes: Some(_) } => [Route::Random { source: Some("all"), bytes: Some("16") }],
    Route::Hash(None) => [Route::Hash(None)],
    Route::Hash(Some(_)) => [Route::Hash(Some("sha2-256"))],
    Route::Hmac(_, None) => [Route::Hmac("k", None)],
    Route::Hmac(_, Some(_)) => [Route::Hmac("k", Some("sha2-256"))],
    Route::Sign(_, None) => [Route::Sign("k", None)],
    Route::Sign(_, Some(_)) => [Route::Sign("k", Some("sha2-256"))],
    Route::Verify(_, None) => [Route::Verify("k", None)],
    Route::Verify(_, Some(_)) => [Route::Verify("k", Some("sha2-256"))],
}

/// Every path shape's OpenAPI template with its methods.
pub(crate) fn templates() -> Vec<(&'static str, Vec<&'static str>)> {
    samples()
        .into_iter()
        .map(|route| (route.template(), route.methods()))
        .collect()
}

/// The template and methods of the route a path under the mount parses to.
pub(crate) fn resolve(rest: &str) -> Option<(&'static str, Vec<&'static str>)> {
    Route::parse(rest).map(|route| (route.template(), route.methods()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vaults_paths() {
        assert_eq!(Route::parse("keys"), Some(Route::ListKeys));
        assert_eq!(Route::parse("keys/rotate"), Some(Route::Key("rotate")));
        assert_eq!(
            Route::parse("keys/rotate/rotate"),
            Some(Route::KeyRotate("rotate"))
        );
        assert_eq!(Route::parse("keys/k/bogus"), None);
        assert_eq!(Route::parse("keys/-x"), None);
        assert_eq!(Route::parse("keys/name."), None);
        assert_eq!(
            Route::parse("keys/bad..name"),
            Some(Route::Key("bad..name"))
        );
        assert_eq!(Route::parse("encrypt/k/extra"), None);
        assert_eq!(
            Route::parse("hmac/k/sha2-512"),
            Some(Route::Hmac("k", Some("sha2-512")))
        );
        assert_eq!(
            Route::parse("export/encryption-key/k/v1"),
            Some(Route::Export {
                kind: "encryption-key",
                name: "k",
                version: Some("v1")
            })
        );
        assert_eq!(
            Route::parse("random/all/64"),
            Some(Route::Random {
                source: Some("all"),
                bytes: Some("64")
            })
        );
        assert_eq!(
            Route::parse("random/64"),
            Some(Route::Random {
                source: Some("64"),
                bytes: None
            })
        );
        assert_eq!(
            Route::parse("restore/a/b"),
            Some(Route::Restore(Some("a/b")))
        );
        assert_eq!(Route::parse("config/keys"), Some(Route::ConfigKeys));
        assert_eq!(Route::parse(""), None);
        assert_eq!(Route::parse("datakey/wrapped"), None);
    }
}
