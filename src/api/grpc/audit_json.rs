//! gRPC messages as the audit log shows them: rendered through their
//! descriptor (prost-reflect) into the proto3 JSON mapping with proto field
//! names, so bytes fields become base64 text exactly as REST clients send
//! them, and the same plaintext hashes to the same value over both APIs.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;
use tonic::Code;
use zeroize::Zeroizing;

use super::pb;

static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).ok());

/// `message` as JSON (`None` if the descriptor is unknown, which the build
/// makes impossible for `cipherd.v1` messages).
pub(super) fn to_json<M: prost::Name + prost::Message>(message: &M) -> Option<Value> {
    let pool = POOL.as_ref()?;
    let descriptor = pool.get_message_by_name(&M::full_name())?;
    // The encoding may hold plaintexts or data keys: wipe it after use.
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
}
