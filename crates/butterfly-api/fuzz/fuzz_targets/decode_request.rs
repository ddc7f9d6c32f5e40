//! Feeds arbitrary bytes to the request decoder/validator/dispatcher with the
//! reference handler, in clear and with a key; replies must always decode.
#![no_main]

use butterfly_api::crypto::Key;
use butterfly_api::{DispatchConfig, Dispatcher, MemoryHandler};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let mut h = MemoryHandler::new();
    let mut d = Dispatcher::default();
    let r = d.handle_bytes(&mut h, data);
    assert!(butterfly_api::pb::proto::Messages::decode(r.bytes.as_slice()).is_ok());
    let mut d = Dispatcher::new(DispatchConfig { key: Some(Key::from_bytes([9; 32])), ..Default::default() });
    let r = d.handle_bytes(&mut h, data);
    assert!(butterfly_api::pb::proto::Messages::decode(r.bytes.as_slice()).is_ok());
});
