//! The client commands: each builds a REST request, sends it, and prints the
//! answer as a table (default) or JSON (`--format json` / `-format=json`).

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use super::client::Client;

/// Output format.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    /// `key  value` lines.
    #[default]
    Table,
    /// The response's `data` (or whole body) as JSON.
    Json,
}

/// Flags every client command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
    /// Transit mount path.
    #[arg(long, default_value = "transit", global = true)]
    mount: String,
}

/// `cipherd operator ...`
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Initialize a new server: prints the unseal shares and the root token once.
    Init {
        /// Number of shares.
        #[arg(long, default_value_t = 5)]
        key_shares: u8,
        /// Shares needed to unseal.
        #[arg(long, default_value_t = 3)]
        key_threshold: u8,
        #[command(flatten)]
        common: Common,
    },
    /// Submit one unseal share (read from stdin when omitted).
    Unseal {
        /// The share, hex or base64.
        key: Option<String>,
        /// Discard the shares submitted so far.
        #[arg(long)]
        reset: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Seal the server (needs a root or sudo token).
    Seal {
        #[command(flatten)]
        common: Common,
    },
    /// Show seal status.
    Status {
        #[command(flatten)]
        common: Common,
    },
}

/// `cipherd key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key.
    Create {
        /// Key name.
        name: String,
        /// Key type (aes256-gcm96, chacha20-poly1305, ed25519, ecdsa-p256, rsa-2048, hmac, ...).
        #[arg(long = "type", default_value = "aes256-gcm96")]
        key_type: String,
        /// Derive per-request keys from a context.
        #[arg(long)]
        derived: bool,
        /// Deterministic encryption (needs --derived).
        #[arg(long)]
        convergent: bool,
        /// Allow export.
        #[arg(long)]
        exportable: bool,
        /// Rotate automatically after this period (e.g. 720h).
        #[arg(long)]
        auto_rotate_period: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Add a new version.
    Rotate {
        /// Key name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Show a key.
    Read {
        /// Key name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// List keys.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Count the values of a PostgreSQL column or a file by key version, to
    /// know when min_decryption_version can be raised.
    VersionsInUse {
        /// The key (optional): read over REST to say which minimum is safe.
        #[arg(long = "key", value_name = "NAME")]
        key: Option<String>,
        #[command(flatten)]
        source: super::rewrap::SourceArgs,
        #[command(flatten)]
        common: Common,
    },
}

/// `cipherd encrypt`
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Key name.
    key: String,
    /// The plaintext (raw text; use --base64 if it is already base64).
    plaintext: String,
    /// The plaintext argument is base64.
    #[arg(long)]
    base64: bool,
    /// Derivation context (raw text).
    #[arg(long)]
    context: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// `cipherd decrypt`
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// Key name.
    key: String,
    /// The `vault:vN:` ciphertext.
    ciphertext: String,
    /// Print the plaintext as base64 instead of raw bytes.
    #[arg(long)]
    base64: bool,
    /// Derivation context (raw text).
    #[arg(long)]
    context: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// `cipherd rewrap`: one ciphertext (positional KEY and CIPHERTEXT, over
/// REST), or a bulk job when `--postgres` or `--input` is given.
#[derive(Debug, Args)]
pub struct RewrapArgs {
    /// Key name.
    key: Option<String>,
    /// The `vault:vN:` ciphertext (single mode).
    ciphertext: Option<String>,
    /// Derivation context (raw text; single mode).
    #[arg(long)]
    context: Option<String>,
    #[command(flatten)]
    job: super::rewrap::JobArgs,
    #[command(flatten)]
    common: Common,
}

/// `cipherd sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Key name.
    key: String,
    /// The input (raw text).
    input: String,
    /// Hash algorithm (sha2-256, sha3-512, ...).
    #[arg(long)]
    hash_algorithm: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// `cipherd verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Key name.
    key: String,
    /// The input (raw text).
    input: String,
    /// The `vault:vN:` signature.
    signature: String,
    /// Hash algorithm (sha2-256, sha3-512, ...).
    #[arg(long)]
    hash_algorithm: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// `cipherd token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a child token.
    Create {
        /// Policies to attach (repeatable).
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// Time to live (e.g. 1h).
        #[arg(long)]
        ttl: Option<String>,
        /// Make an orphan token.
        #[arg(long)]
        orphan: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Show the current token.
    Lookup {
        #[command(flatten)]
        common: Common,
    },
}

/// `cipherd policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Write a policy from an HCL file (`-` for stdin).
    Write {
        /// Policy name.
        name: String,
        /// HCL file.
        file: String,
        #[command(flatten)]
        common: Common,
    },
    /// Show a policy.
    Read {
        /// Policy name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

pub(super) async fn operator(command: OperatorCommand) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    match command {
        OperatorCommand::Init {
            key_shares,
            key_threshold,
            common,
        } => {
            let body = json!({"secret_shares": key_shares, "secret_threshold": key_threshold});
            let reply = client.call("PUT", "sys/init", Some(&body)).await?;
            if matches!(common.format, Format::Json) {
                return print_json(&reply);
            }
            for (i, key) in reply["keys_base64"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                println!("Unseal Key {}: {}", i + 1, key.as_str().unwrap_or_default());
            }
            println!();
            println!(
                "Initial Root Token: {}",
                reply["root_token"].as_str().unwrap_or_default()
            );
            println!();
            println!(
                "The server is initialized with {key_shares} shares and a threshold of {key_threshold}."
            );
            println!(
                "It is sealed: unseal it with {key_threshold} of these shares (`cipherd operator unseal`)."
            );
            Ok(())
        }
        OperatorCommand::Unseal { key, reset, common } => {
            let body = if reset {
                json!({"reset": true})
            } else {
                let key = match key {
                    Some(key) => key,
                    None => {
                        let mut line = String::new();
                        std::io::stdin()
                            .read_line(&mut line)
                            .context("reading the share from stdin")?;
                        line.trim().to_owned()
                    }
                };
                json!({"key": key})
            };
            let reply = client.call("PUT", "sys/unseal", Some(&body)).await?;
            print_object(common.format, &reply)
        }
        OperatorCommand::Seal { common } => {
            client.call("PUT", "sys/seal", None).await?;
            if matches!(common.format, Format::Table) {
                println!("Success! Sealed.");
            }
            Ok(())
        }
        OperatorCommand::Status { common } => {
            let reply = client.call("GET", "sys/seal-status", None).await?;
            print_object(common.format, &reply)
        }
    }
}

pub(super) async fn key(command: KeyCommand) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    match command {
        KeyCommand::Create {
            name,
            key_type,
            derived,
            convergent,
            exportable,
            auto_rotate_period,
            common,
        } => {
            let mut body = json!({"type": key_type, "derived": derived, "convergent_encryption": convergent, "exportable": exportable});
            if let Some(period) = auto_rotate_period {
                body["auto_rotate_period"] = json!(period);
            }
            let reply = client
                .call(
                    "POST",
                    &format!("{}/keys/{name}", common.mount),
                    Some(&body),
                )
                .await?;
            print_data(common.format, &reply)
        }
        KeyCommand::Rotate { name, common } => {
            let reply = client
                .call(
                    "POST",
                    &format!("{}/keys/{name}/rotate", common.mount),
                    None,
                )
                .await?;
            print_data(common.format, &reply)
        }
        KeyCommand::Read { name, common } => {
            let reply = client
                .call("GET", &format!("{}/keys/{name}", common.mount), None)
                .await?;
            print_data(common.format, &reply)
        }
        KeyCommand::List { common } => {
            let reply = client
                .call("LIST", &format!("{}/keys", common.mount), None)
                .await?;
            print_data(common.format, &reply)
        }
        KeyCommand::VersionsInUse {
            key,
            source,
            common,
        } => {
            let facts = match key {
                Some(name) => {
                    let reply = client
                        .call("GET", &format!("{}/keys/{name}", common.mount), None)
                        .await?;
                    let version = |field: &str| {
                        reply["data"][field]
                            .as_u64()
                            .and_then(|v| u32::try_from(v).ok())
                            .with_context(|| format!("the server's key has no {field}"))
                    };
                    Some((
                        version("latest_version")?,
                        version("min_decryption_version")?,
                    ))
                }
                None => None,
            };
            super::rewrap::versions_in_use(&source, facts).await?;
            Ok(())
        }
    }
}

fn b64(text: &str) -> String {
    STANDARD.encode(text.as_bytes())
}

fn with_context(mut body: Value, context: Option<&str>) -> Value {
    if let Some(context) = context {
        body["context"] = json!(b64(context));
    }
    body
}

pub(super) async fn encrypt(args: EncryptArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let plaintext = if args.base64 {
        args.plaintext.clone()
    } else {
        b64(&args.plaintext)
    };
    let body = with_context(json!({"plaintext": plaintext}), args.context.as_deref());
    let reply = client
        .call(
            "POST",
            &format!("{}/encrypt/{}", args.common.mount, args.key),
            Some(&body),
        )
        .await?;
    print_data(args.common.format, &reply)
}

pub(super) async fn decrypt(args: DecryptArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let body = with_context(
        json!({"ciphertext": args.ciphertext}),
        args.context.as_deref(),
    );
    let reply = client
        .call(
            "POST",
            &format!("{}/decrypt/{}", args.common.mount, args.key),
            Some(&body),
        )
        .await?;
    if matches!(args.common.format, Format::Json) {
        return print_json(&reply["data"]);
    }
    let encoded = reply["data"]["plaintext"].as_str().unwrap_or_default();
    if args.base64 {
        println!("{encoded}");
    } else {
        let bytes = STANDARD
            .decode(encoded)
            .context("server sent invalid base64")?;
        use std::io::Write as _;
        std::io::stdout().write_all(&bytes)?;
        println!();
    }
    Ok(())
}

pub(super) async fn rewrap(args: RewrapArgs) -> anyhow::Result<()> {
    if args.job.is_bulk() {
        if args.ciphertext.is_some() || args.context.is_some() {
            bail!("a bulk rewrap (--postgres or --input) takes no CIPHERTEXT or --context");
        }
        super::rewrap::run(args.job, args.key, &args.common.mount).await?;
        return Ok(());
    }
    let (Some(key), Some(ciphertext)) = (args.key, args.ciphertext) else {
        bail!("usage: cipherd rewrap KEY CIPHERTEXT, or a bulk job with --postgres or --input");
    };
    let client = Client::from_env()?;
    let body = with_context(json!({"ciphertext": ciphertext}), args.context.as_deref());
    let reply = client
        .call(
            "POST",
            &format!("{}/rewrap/{key}", args.common.mount),
            Some(&body),
        )
        .await?;
    print_data(args.common.format, &reply)
}

pub(super) async fn sign(args: SignArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let mut body = json!({"input": b64(&args.input)});
    if let Some(hash) = args.hash_algorithm {
        body["hash_algorithm"] = json!(hash);
    }
    let reply = client
        .call(
            "POST",
            &format!("{}/sign/{}", args.common.mount, args.key),
            Some(&body),
        )
        .await?;
    print_data(args.common.format, &reply)
}

pub(super) async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let mut body = json!({"input": b64(&args.input), "signature": args.signature});
    if let Some(hash) = args.hash_algorithm {
        body["hash_algorithm"] = json!(hash);
    }
    let reply = client
        .call(
            "POST",
            &format!("{}/verify/{}", args.common.mount, args.key),
            Some(&body),
        )
        .await?;
    print_data(args.common.format, &reply)?;
    if reply["data"]["valid"] != json!(true) {
        bail!("signature is not valid");
    }
    Ok(())
}

pub(super) async fn token(command: TokenCommand) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    match command {
        TokenCommand::Create {
            policies,
            ttl,
            orphan,
            common,
        } => {
            let mut body = json!({"policies": policies});
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            let path = if orphan {
                "auth/token/create-orphan"
            } else {
                "auth/token/create"
            };
            let reply = client.call("POST", path, Some(&body)).await?;
            if matches!(common.format, Format::Json) {
                return print_json(&reply["auth"]);
            }
            print_object(Format::Table, &reply["auth"])
        }
        TokenCommand::Lookup { common } => {
            let reply = client.call("GET", "auth/token/lookup-self", None).await?;
            print_data(common.format, &reply)
        }
    }
}

pub(super) async fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    match command {
        PolicyCommand::Write { name, file, common } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("reading the policy from stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            client
                .call(
                    "PUT",
                    &format!("sys/policies/acl/{name}"),
                    Some(&json!({"policy": text})),
                )
                .await?;
            if matches!(common.format, Format::Table) {
                println!("Success! Uploaded policy: {name}");
            }
            Ok(())
        }
        PolicyCommand::Read { name, common } => {
            let reply = client
                .call("GET", &format!("sys/policies/acl/{name}"), None)
                .await?;
            if matches!(common.format, Format::Json) {
                return print_json(&reply["data"]);
            }
            println!("{}", reply["data"]["policy"].as_str().unwrap_or_default());
            Ok(())
        }
    }
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_data(format: Format, reply: &Value) -> anyhow::Result<()> {
    let data = if reply.get("data").is_some_and(|d| !d.is_null()) {
        &reply["data"]
    } else {
        reply
    };
    if let Some(warnings) = reply.get("warnings").and_then(Value::as_array) {
        for warning in warnings {
            eprintln!("WARNING! {}", warning.as_str().unwrap_or_default());
        }
    }
    print_object(format, data)
}

fn print_object(format: Format, value: &Value) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(value),
        Format::Table => {
            let empty = Map::new();
            let object = value.as_object().unwrap_or(&empty);
            let width = object.keys().map(String::len).max().unwrap_or(0).max(3);
            println!("{:width$}    Value", "Key");
            println!("{:width$}    -----", "---");
            for (key, value) in object {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("{key:width$}    {text}");
            }
            Ok(())
        }
    }
}
