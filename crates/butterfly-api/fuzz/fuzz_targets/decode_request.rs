//! Feeds arbitrary bytes to the request decoder/validator/dispatcher with the
//! reference handler, in clear and with a key; replies must always decode, and never be
//! INTERNAL_ERROR (a panic the dispatcher caught).
#![no_main]

use butterfly_api::crypto::Key;
use butterfly_api::{DispatchConfig, Dispatcher, MemoryHandler};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let mut h = MemoryHandler::new();
    let mut d = Dispatcher::default();
    let r = d.handle_bytes(&mut h, data);
    let reply = butterfly_api::pb::proto::Messages::decode(r.bytes.as_slice()).expect("reply decodes");
    // The dispatcher turns a panic into INTERNAL_ERROR; the reference handler never panics,
    // so that code means a panic in decoding or validation, which the fuzzer must report.
    let internal = butterfly_api::pb::proto::error::Code::InternalError as i32;
    assert!(reply.messages.iter().all(|m| m.error.and_then(|e| e.code) != Some(internal)));
    let mut d = Dispatcher::new(DispatchConfig { key: Some(Key::from_bytes([9; 32])), ..Default::default() });
    let r = d.handle_bytes(&mut h, data);
    assert!(butterfly_api::pb::proto::Messages::decode(r.bytes.as_slice()).is_ok());
});
