//! gRPC messages as the audit log shows them: the proto3 JSON mapping with
//! proto field names, so bytes fields become base64 text exactly as REST
//! clients send them, and the same plaintext hashes to the same value over
//! both APIs.
//!
//! [`ProtoData`] writes a message's JSON straight from its protobuf encoding,
//! field by field through its descriptor, hashing strings as it goes. That is
//! what prost-reflect's `DynamicMessage` serialization produces (the tests
//! hold the two to the same output, up to member order), without decoding the
//! message into a dynamic tree and a `serde_json::Value` first, which under
//! load cost more than the call itself. Messages with kinds this writer does
//! not handle (maps, floating point) go through prost-reflect instead.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::RwLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::bytes::Buf as _;
use prost::encoding::{WireType, decode_key, decode_varint};
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions};
use serde_json::Value;
use tonic::Code;
use zeroize::Zeroizing;

use super::pb;
use crate::audit::data::vault_version;
use crate::audit::hasher::Hasher;
use crate::audit::{AuditData, DataFacts};

static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).ok());

/// Nesting deeper than this is written through prost-reflect (our messages
/// nest two levels).
const MAX_DEPTH: usize = 16;

/// The fields of a request message that name the mount and the key: over
/// REST they are parts of the path, not of the data, and the entry shows
/// them in clear there (`request.path`, `cipherd.key`). Left out of the
/// data, a gRPC call's entry shows the same data as the REST call it is
/// checked as, instead of adding a hash of a name already written in clear.
const ROUTE_FIELDS: [&str; 2] = ["mount", "key"];

/// A gRPC message as audit data.
pub(super) struct ProtoData<'a, M> {
    message: &'a M,
    /// Leave out the top-level [`ROUTE_FIELDS`] (strings) of a request.
    omit_route: bool,
}

impl<'a, M> ProtoData<'a, M> {
    /// A request message: its route fields are left out.
    pub(super) fn request(message: &'a M) -> Self {
        Self {
            message,
            omit_route: true,
        }
    }

    /// A response message, written whole.
    pub(super) fn response(message: &'a M) -> Self {
        Self {
            message,
            omit_route: false,
        }
    }
}

impl<M: prost::Name + prost::Message> AuditData for ProtoData<'_, M> {
    fn write_protected(&self, hasher: &Hasher, out: &mut String, facts: Option<&mut DataFacts>) {
        let Some(descriptor) = POOL
            .as_ref()
            .and_then(|pool| pool.get_message_by_name(&M::full_name()))
        else {
            // The build makes this impossible for `cipherd.v1` messages.
            out.push_str("{}");
            return;
        };
        // The encoding may hold plaintexts or data keys: wipe it after use.
        let encoded = Zeroizing::new(self.message.encode_to_vec());
        let start = out.len();
        let mut found = DataFacts::default();
        let mut writer = Transcoder {
            hasher,
            out,
            facts: &mut found,
            scratch: Zeroizing::new(String::new()),
            omit_route: self.omit_route,
        };
        if writer.message(&descriptor, &encoded, 0).is_some() {
            if let Some(facts) = facts {
                facts.key_versions.append(&mut found.key_versions);
                if found.items.is_some() {
                    facts.items = found.items;
                }
            }
            return;
        }
        out.truncate(start);
        match to_json(self.message) {
            Some(mut json) => {
                if self.omit_route {
                    omit_route(&mut json);
                }
                json.write_protected(hasher, out, facts);
            }
            None => out.push_str("{}"),
        }
    }
}

/// Removes the top-level [`ROUTE_FIELDS`] (strings) from a message's JSON.
fn omit_route(json: &mut Value) {
    if let Some(fields) = json.as_object_mut() {
        fields.retain(|name, value| !(value.is_string() && ROUTE_FIELDS.contains(&name.as_str())));
    }
}

/// Writes protobuf encodings as protected JSON. Every method returns `None`
/// for an encoding or a kind it does not handle; the caller then starts over
/// through prost-reflect.
struct Transcoder<'a> {
    hasher: &'a Hasher,
    out: &'a mut String,
    facts: &'a mut DataFacts,
    /// base64 of the bytes field being written (may be a plaintext).
    scratch: Zeroizing<String>,
    /// Skip the top-level [`ROUTE_FIELDS`] (see [`ProtoData::request`]).
    omit_route: bool,
}

/// What the transcoder needs of one message type, read once from its
/// descriptor (descriptor look-ups clone reference-counted handles, which
/// showed in profiles of large batches).
struct Layout {
    fields: Vec<FieldLayout>,
}

struct FieldLayout {
    number: u32,
    /// `"name":`, ready to write.
    key: String,
    name: String,
    kind: Kind,
    list: bool,
    map: bool,
    /// One of the [`ROUTE_FIELDS`] (a string): left out of a request's data
    /// at the top level.
    route: bool,
}

/// Layouts by message name, built on first use.
static LAYOUTS: LazyLock<RwLock<HashMap<String, Arc<Layout>>>> = LazyLock::new(RwLock::default);

fn layout(descriptor: &MessageDescriptor) -> Arc<Layout> {
    if let Some(known) = LAYOUTS.read().get(descriptor.full_name()) {
        return known.clone();
    }
    let layout = Arc::new(Layout {
        fields: descriptor
            .fields()
            .map(|field| {
                let mut key = String::new();
                crate::audit::json::push_key(&mut key, field.name());
                FieldLayout {
                    number: field.number(),
                    key,
                    name: field.name().to_owned(),
                    kind: field.kind(),
                    list: field.is_list(),
                    map: field.is_map(),
                    route: matches!(field.kind(), Kind::String)
                        && ROUTE_FIELDS.contains(&field.name()),
                }
            })
            .collect(),
    });
    LAYOUTS
        .write()
        .insert(descriptor.full_name().to_owned(), layout.clone());
    layout
}

impl Transcoder<'_> {
    fn message(
        &mut self,
        descriptor: &MessageDescriptor,
        mut buf: &[u8],
        depth: usize,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let layout = layout(descriptor);
        self.out.push('{');
        let mut members = 0usize;
        // The repeated field whose array is open, and its element count:
        // prost writes a repeated field's elements one after the other.
        let mut open: Option<(u32, usize)> = None;
        while !buf.is_empty() {
            let (number, wire_type) = decode_key(&mut buf).ok()?;
            let Some(field) = layout.fields.iter().find(|f| f.number == number) else {
                skip(wire_type, &mut buf)?;
                continue;
            };
            if field.route && depth == 0 && self.omit_route {
                skip(wire_type, &mut buf)?;
                continue;
            }
            if field.map {
                return None;
            }
            let list = field.list;
            if let Some((open_number, _)) = open
                && (!list || open_number != number)
            {
                self.out.push(']');
                open = None;
            }
            if open.is_none() {
                if members > 0 {
                    self.out.push(',');
                }
                members += 1;
                self.out.push_str(&field.key);
                if list {
                    self.out.push('[');
                    open = Some((number, 0));
                }
            }
            let kind = &field.kind;
            let is_key_version = field.name == "key_version";
            if let Some((_, count)) = open.as_mut() {
                if wire_type == WireType::LengthDelimited && is_packable(kind) {
                    let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                    let mut packed = buf.get(..len)?;
                    buf.advance(len);
                    while !packed.is_empty() {
                        if *count > 0 {
                            self.out.push(',');
                        }
                        *count += 1;
                        self.scalar(kind, packed_wire_type(kind)?, &mut packed, false)?;
                    }
                } else {
                    if *count > 0 {
                        self.out.push(',');
                    }
                    *count += 1;
                    self.value(kind, wire_type, &mut buf, depth, false)?;
                }
                if depth == 0 && field.name == "items" {
                    self.facts.items = Some(*count);
                }
            } else {
                self.value(kind, wire_type, &mut buf, depth, is_key_version)?;
            }
        }
        if open.is_some() {
            self.out.push(']');
        }
        self.out.push('}');
        Some(())
    }

    fn value(
        &mut self,
        kind: &Kind,
        wire_type: WireType,
        buf: &mut &[u8],
        depth: usize,
        is_key_version: bool,
    ) -> Option<()> {
        match kind {
            Kind::String | Kind::Bytes | Kind::Message(_) => {
                if wire_type != WireType::LengthDelimited {
                    return None;
                }
                let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
                let bytes = buf.get(..len)?;
                buf.advance(len);
                match kind {
                    Kind::String => {
                        let text = std::str::from_utf8(bytes).ok()?;
                        if let Some(version) = vault_version(text) {
                            self.facts.key_versions.insert(version);
                        }
                        self.hasher.push_protected(text, self.out);
                    }
                    Kind::Bytes => {
                        self.scratch.clear();
                        STANDARD.encode_string(bytes, &mut self.scratch);
                        self.hasher.push_protected(&self.scratch, self.out);
                    }
                    Kind::Message(inner) => self.message(inner, bytes, depth + 1)?,
                    _ => return None,
                }
                Some(())
            }
            _ => self.scalar(kind, wire_type, buf, is_key_version),
        }
    }

    /// A number, boolean or enum.
    fn scalar(
        &mut self,
        kind: &Kind,
        wire_type: WireType,
        buf: &mut &[u8],
        is_key_version: bool,
    ) -> Option<()> {
        use std::fmt::Write as _;
        let out = &mut *self.out;
        let number = match (kind, wire_type) {
            (Kind::Bool, WireType::Varint) => {
                out.push_str(if decode_varint(buf).ok()? != 0 {
                    "true"
                } else {
                    "false"
                });
                return Some(());
            }
            (Kind::Enum(descriptor), WireType::Varint) => {
                // Two's complement truncation is the wire format of int32.
                #[allow(clippy::cast_possible_truncation)]
                let value = decode_varint(buf).ok()? as i32;
                match descriptor.get_value(value) {
                    Some(known) => self.hasher.push_protected(known.name(), out),
                    None => {
                        let _ = write!(out, "{value}");
                    }
                }
                return Some(());
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
            (Kind::Int32, WireType::Varint) => i128::from(decode_varint(buf).ok()? as i32),
            #[allow(clippy::cast_possible_wrap)]
            (Kind::Int64, WireType::Varint) => i128::from(decode_varint(buf).ok()? as i64),
            (Kind::Uint32, WireType::Varint) => {
                i128::from(u32::try_from(decode_varint(buf).ok()? & 0xffff_ffff).ok()?)
            }
            (Kind::Uint64, WireType::Varint) => i128::from(decode_varint(buf).ok()?),
            (Kind::Sint32 | Kind::Sint64, WireType::Varint) => {
                let raw = decode_varint(buf).ok()?;
                #[allow(clippy::cast_possible_wrap)]
                let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
                i128::from(value)
            }
            (Kind::Fixed32, WireType::ThirtyTwoBit) => i128::from(take_u32(buf)?),
            #[allow(clippy::cast_possible_wrap)]
            (Kind::Sfixed32, WireType::ThirtyTwoBit) => i128::from(take_u32(buf)? as i32),
            (Kind::Fixed64, WireType::SixtyFourBit) => i128::from(take_u64(buf)?),
            #[allow(clippy::cast_possible_wrap)]
            (Kind::Sfixed64, WireType::SixtyFourBit) => i128::from(take_u64(buf)? as i64),
            // Floating point (none in cipherd's protos) goes through
            // prost-reflect, which writes it as serde_json does.
            _ => return None,
        };
        if is_key_version
            && let Ok(version) = u32::try_from(number)
            && version > 0
        {
            self.facts.key_versions.insert(version);
        }
        out.push_str(itoa::Buffer::new().format(number));
        Some(())
    }
}

/// Kinds a repeated field may pack into one length-delimited record.
fn is_packable(kind: &Kind) -> bool {
    !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_))
}

/// The wire type of one element of a packed repeated field.
fn packed_wire_type(kind: &Kind) -> Option<WireType> {
    Some(match kind {
        Kind::Fixed32 | Kind::Sfixed32 | Kind::Float => WireType::ThirtyTwoBit,
        Kind::Fixed64 | Kind::Sfixed64 | Kind::Double => WireType::SixtyFourBit,
        Kind::String | Kind::Bytes | Kind::Message(_) => return None,
        _ => WireType::Varint,
    })
}

fn take_u32(buf: &mut &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    buf.advance(4);
    Some(u32::from_le_bytes(bytes))
}

fn take_u64(buf: &mut &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(..8)?.try_into().ok()?;
    buf.advance(8);
    Some(u64::from_le_bytes(bytes))
}

/// Steps over a field the descriptor does not know.
fn skip(wire_type: WireType, buf: &mut &[u8]) -> Option<()> {
    let len = match wire_type {
        WireType::Varint => {
            decode_varint(buf).ok()?;
            0
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => usize::try_from(decode_varint(buf).ok()?).ok()?,
        WireType::StartGroup | WireType::EndGroup => return None,
    };
    if buf.len() < len {
        return None;
    }
    buf.advance(len);
    Some(())
}

/// `message` as JSON through prost-reflect (`None` if the descriptor is
/// unknown, which the build makes impossible for `cipherd.v1` messages): the
/// fallback of [`ProtoData`], and what the tests hold it to.
pub(super) fn to_json<M: prost::Name + prost::Message>(message: &M) -> Option<Value> {
    let pool = POOL.as_ref()?;
    let descriptor = pool.get_message_by_name(&M::full_name())?;
    let encoded = Zeroizing::new(message.encode_to_vec());
    let dynamic = DynamicMessage::decode(descriptor, encoded.as_slice()).ok()?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .ok()
}

/// The HTTP status of the REST reply equivalent to a gRPC code, so reports
/// count failures and denials the same way for both APIs.
pub(super) fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 413,
        Code::Cancelled => 499,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretBytes;

    #[test]
    fn requests_leave_out_the_mount_and_key_as_rest_does() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"salt"), false);
        let message = pb::EncryptRequest {
            mount: "transit".into(),
            key: "orders".into(),
            plaintext: b"hello".to_vec(),
            ..Default::default()
        };
        let plaintext_only = serde_json::json!({"plaintext": hasher.hash_str("aGVsbG8=")});
        let mut out = String::new();
        ProtoData::request(&message).write_protected(&hasher, &mut out, None);
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), plaintext_only);
        // prost-reflect's path (messages the transcoder does not handle).
        let mut json = to_json(&message).unwrap();
        omit_route(&mut json);
        let mut out = String::new();
        json.write_protected(&hasher, &mut out, None);
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), plaintext_only);
        // A response is written whole, and only string fields are routes.
        let mut out = String::new();
        ProtoData::response(&message).write_protected(&hasher, &mut out, None);
        let whole: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(whole["key"], hasher.hash_str("orders"));
        let mut nested = serde_json::json!({"key": {"name": "k"}, "mount": 1});
        omit_route(&mut nested);
        assert_eq!(
            nested,
            serde_json::json!({"key": {"name": "k"}, "mount": 1})
        );
    }

    #[test]
    fn renders_bytes_as_base64_with_proto_names() {
        let message = pb::EncryptRequest {
            key: "orders".into(),
            plaintext: b"hello".to_vec(),
            ..Default::default()
        };
        let json = to_json(&message).expect("descriptor for EncryptRequest");
        assert_eq!(json["key"], "orders");
        assert_eq!(json["plaintext"], "aGVsbG8=");
        assert!(json.get("context").is_none());
    }

    /// The transcoder's output and facts, and prost-reflect's through the
    /// `Value` path, for the same message and hasher.
    fn both<M: prost::Name + prost::Message>(
        message: &M,
        hasher: &Hasher,
    ) -> [(Value, DataFacts); 2] {
        let mut fast = String::new();
        let mut fast_facts = DataFacts::default();
        ProtoData::response(message).write_protected(hasher, &mut fast, Some(&mut fast_facts));
        let mut slow = String::new();
        let mut slow_facts = DataFacts::default();
        to_json(message).expect("descriptor").write_protected(
            hasher,
            &mut slow,
            Some(&mut slow_facts),
        );
        [
            (
                serde_json::from_str(&fast).expect("transcoder writes JSON"),
                fast_facts,
            ),
            (
                serde_json::from_str(&slow).expect("prost-reflect writes JSON"),
                slow_facts,
            ),
        ]
    }

    fn assert_same<M: prost::Name + prost::Message>(message: &M) {
        for raw in [false, true] {
            let hasher = Hasher::new(&SecretBytes::from_slice(b"salt"), raw);
            let [fast, slow] = both(message, &hasher);
            assert_eq!(fast, slow, "{} (raw: {raw})", M::full_name());
        }
    }

    fn ciphertext(version: u32) -> pb::Ciphertext {
        pb::Ciphertext {
            ciphertext: format!("vault:v{version}:AAAA"),
            key_version: version,
        }
    }

    #[test]
    fn transcoder_writes_what_prost_reflect_writes() {
        assert_same(&pb::EncryptRequest::default());
        assert_same(&pb::EncryptRequest {
            mount: "transit".into(),
            key: "orders \"quoted\"\n".into(),
            plaintext: vec![0, 1, 2, 255, 254],
            context: b"ctx".to_vec(),
            associated_data: b"ad".to_vec(),
            key_version: 7,
            r#type: "aes256-gcm96".into(),
            convergent_encryption: true,
        });
        assert_same(&pb::EncryptResponse {
            ciphertext: "vault:v3:abc".into(),
            key_version: 3,
        });
        assert_same(&pb::EncryptBatchRequest {
            key: "k".into(),
            items: (0..5u8)
                .map(|i| pb::EncryptItem {
                    plaintext: vec![i; 64],
                    reference: format!("ref-{i}"),
                    key_version: u32::from(i),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        assert_same(&pb::EncryptBatchResponse {
            results: vec![
                pb::CiphertextResult {
                    result: Some(pb::ciphertext_result::Result::Ok(ciphertext(2))),
                    reference: "a".into(),
                },
                pb::CiphertextResult {
                    result: Some(pb::ciphertext_result::Result::Error("bad input".into())),
                    reference: String::new(),
                },
                pb::CiphertextResult::default(),
                pb::CiphertextResult {
                    result: Some(pb::ciphertext_result::Result::Ok(pb::Ciphertext::default())),
                    reference: "empty".into(),
                },
            ],
        });
        assert_same(&pb::BulkRequest {
            operation: pb::BulkOperation::Rewrap as i32,
            key: "k".into(),
            items: vec![pb::BulkItem {
                ciphertext: "vault:v1:x".into(),
                ..Default::default()
            }],
            sequence: u64::MAX,
            ..Default::default()
        });
        assert_same(&pb::BulkRequest {
            operation: 42,
            ..Default::default()
        });
        assert_same(&pb::BulkResponse {
            sequence: 9,
            operation: pb::BulkOperation::Decrypt as i32,
            results: vec![
                pb::BulkResult {
                    result: Some(pb::bulk_result::Result::Plaintext(b"secret".to_vec())),
                    reference: "r".into(),
                },
                pb::BulkResult {
                    result: Some(pb::bulk_result::Result::Ciphertext(ciphertext(4))),
                    reference: String::new(),
                },
            ],
        });
        assert_same(&pb::UpdateKeyConfigRequest {
            key: "k".into(),
            min_decryption_version: Some(0),
            min_encryption_version: Some(-3),
            deletion_allowed: Some(false),
            exportable: Some(true),
            allow_plaintext_backup: None,
            auto_rotate_period_seconds: Some(u64::MAX),
            ..Default::default()
        });
        assert_same(&pb::ReadKeyResponse {
            key: Some(pb::Key {
                name: "k".into(),
                r#type: "ed25519".into(),
                latest_version: 2,
                auto_rotate_period_seconds: 3600,
                versions: vec![
                    pb::KeyVersion {
                        version: 1,
                        created_unix_nanos: -5,
                        public_key: "pk".into(),
                        ..Default::default()
                    },
                    pb::KeyVersion {
                        version: 2,
                        created_unix_nanos: i64::MAX,
                        encryptions: 12,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        });
        assert_same(&pb::ReadKeyResponse { key: None });
        assert_same(&pb::ReadKeyResponse {
            key: Some(pb::Key::default()),
        });
    }

    #[test]
    fn transcoder_collects_versions_and_items() {
        let hasher = Hasher::new(&SecretBytes::from_slice(b"salt"), false);
        let [(_, fast), (_, slow)] = both(
            &pb::EncryptBatchResponse {
                results: vec![
                    pb::CiphertextResult {
                        result: Some(pb::ciphertext_result::Result::Ok(ciphertext(2))),
                        reference: String::new(),
                    },
                    pb::CiphertextResult {
                        result: Some(pb::ciphertext_result::Result::Ok(ciphertext(5))),
                        reference: String::new(),
                    },
                ],
            },
            &hasher,
        );
        assert_eq!(
            fast.key_versions.iter().copied().collect::<Vec<_>>(),
            [2, 5]
        );
        assert_eq!(fast.key_versions, slow.key_versions);
        let [(_, fast), (_, slow)] = both(
            &pb::DecryptBatchRequest {
                key: "k".into(),
                items: vec![pb::DecryptItem::default(); 3],
                ..Default::default()
            },
            &hasher,
        );
        assert_eq!(fast.items, Some(3));
        assert_eq!(fast, slow);
    }
}
