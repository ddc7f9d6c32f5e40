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

/// Deepest `{`/`<` nesting a request in text format may have. The schema nests a few levels;
/// the parser recurses per level (even into `[type/url]` fields the schema does not have),
/// so deeper input could overflow the stack instead of giving an error.
const MAX_TEXT_NESTING: usize = 32;

/// Refuses text whose braces nest deeper than [`MAX_TEXT_NESTING`] (outside string literals).
fn check_nesting(text: &str) -> Result<(), TextError> {
    let (mut depth, mut quote, mut escaped, mut comment) = (0usize, None, false, false);
    for c in text.chars() {
        if comment {
            comment = c != '\n';
            continue;
        }
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '#' => comment = true,
                '{' | '<' => {
                    depth += 1;
                    if depth > MAX_TEXT_NESTING {
                        return Err(TextError::Text(format!("nested deeper than {MAX_TEXT_NESTING} levels")));
                    }
                }
                '}' | '>' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    Ok(())
}

/// Parses a `Messages` from protobuf text format.
pub fn from_text(text: &str) -> Result<proto::Messages, TextError> {
    check_nesting(text)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deep nesting is an error, not a stack overflow (the parser recursed into each
    /// `[type/url]{` level before noticing the schema has no such field).
    #[test]
    fn deep_nesting_is_refused() {
        let deep = "messages { message_0 { request { ".to_string() + &"[a/proto.Messages]{".repeat(200_000);
        assert!(matches!(from_text(&deep), Err(TextError::Text(e)) if e.contains("nested deeper")));
        assert!(from_text(&"<".repeat(100)).is_err());
    }

    /// Braces inside strings and comments do not count; a real request still parses.
    #[test]
    fn braces_in_strings_and_comments_do_not_count() {
        let deep_in_string = format!("\"{}\"", "{".repeat(100));
        let deep_in_comment = format!("# {}\n", "{".repeat(100));
        assert!(check_nesting(&deep_in_string).is_ok());
        assert!(check_nesting(&deep_in_comment).is_ok());
        assert!(check_nesting("a: 'it\\'s {' b { c { } }").is_ok());
        let req = "# a comment with a quote ' and { braces\nmessages { revision: 0 message_0 { message_id: \"{x}\" request { nic_list: true } } }";
        let m = from_text(req).unwrap();
        assert_eq!(m.messages.len(), 1);
    }
}
