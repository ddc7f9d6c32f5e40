//! Text forms of `proto.Messages`: protobuf text format (as Butterfly's
//! `request` files) and protobuf JSON (proto3 JSON mapping, field names in
//! lowerCamelCase or as declared).

use crate::dispatch::descriptor_pool;
use crate::pb::proto;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};

/// Text conversion errors.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The schema descriptor is unavailable (build defect).
    #[error("schema descriptor missing for {0}")]
    Descriptor(String),
    /// Text format parse failure.
    #[error("text format: {0}")]
    Text(String),
    /// JSON parse failure.
    #[error("json: {0}")]
    Json(String),
    /// Re-encoding failure.
    #[error("conversion: {0}")]
    Convert(String),
}

fn desc(name: &str) -> Result<MessageDescriptor, TextError> {
    descriptor_pool().get_message_by_name(name).ok_or_else(|| TextError::Descriptor(name.into()))
}

fn to_dynamic<M: prost::Message>(name: &str, m: &M) -> Result<DynamicMessage, TextError> {
    DynamicMessage::decode(desc(name)?, m.encode_to_vec().as_slice())
        .map_err(|e| TextError::Convert(e.to_string()))
}

fn from_dynamic<M: prost::Message + Default>(d: &DynamicMessage) -> Result<M, TextError> {
    M::decode(d.encode_to_vec().as_slice()).map_err(|e| TextError::Convert(e.to_string()))
}

/// Pretty protobuf text format of any schema message given by full name
/// (e.g. `proto.Messages`, `MessageV0.Response`).
pub fn message_to_text<M: prost::Message>(full_name: &str, m: &M) -> Result<String, TextError> {
    let d = to_dynamic(full_name, m)?;
    let mut s = d.to_text_format_with_options(&prost_reflect::text_format::FormatOptions::new().pretty(true));
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// JSON of any schema message given by full name (proto field names).
pub fn message_to_json<M: prost::Message>(full_name: &str, m: &M) -> Result<serde_json::Value, TextError> {
    let d = to_dynamic(full_name, m)?;
    let opts =
        prost_reflect::SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(false);
    d.serialize_with_options(serde_json::value::Serializer, &opts).map_err(|e| TextError::Json(e.to_string()))
}

/// `Messages` in pretty protobuf text format.
pub fn to_text(m: &proto::Messages) -> Result<String, TextError> {
    message_to_text("proto.Messages", m)
}

/// Parses a `Messages` from protobuf text format.
pub fn from_text(text: &str) -> Result<proto::Messages, TextError> {
    let d = DynamicMessage::parse_text_format(desc("proto.Messages")?, text)
        .map_err(|e| TextError::Text(e.to_string()))?;
    from_dynamic(&d)
}

/// `Messages` as JSON.
pub fn to_json(m: &proto::Messages) -> Result<String, TextError> {
    let v = message_to_json("proto.Messages", m)?;
    serde_json::to_string_pretty(&v).map_err(|e| TextError::Json(e.to_string()))
}

/// Parses a `Messages` from JSON.
pub fn from_json(text: &str) -> Result<proto::Messages, TextError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let d = DynamicMessage::deserialize(desc("proto.Messages")?, &mut de)
        .map_err(|e| TextError::Json(e.to_string()))?;
    de.end().map_err(|e| TextError::Json(e.to_string()))?;
    from_dynamic(&d)
}

/// Parses a request file: JSON when it starts with `{`, text format otherwise.
pub fn parse_request(text: &str) -> Result<proto::Messages, TextError> {
    if text.trim_start().starts_with('{') {
        from_json(text)
    } else {
        from_text(text)
    }
}
