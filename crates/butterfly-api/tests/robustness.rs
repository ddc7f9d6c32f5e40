//! Bad input: malformed bytes, missing required fields, unknown fields,
//! oversized requests, floods; plus property tests that arbitrary bytes never
//! panic the dispatcher and that rejected requests never change state.

mod common;
use butterfly_api::pb::{message_v0 as v0, proto, MessageV0};
use butterfly_api::{DispatchConfig, Dispatcher, MemoryHandler, Model};
use proptest::prelude::*;
use prost::Message as _;

fn decode(bytes: &[u8]) -> proto::Messages {
    proto::Messages::decode(bytes).expect("reply is always a Messages")
}

fn code(m: &proto::Message) -> Option<proto::error::Code> {
    m.error.and_then(|e| e.code).and_then(|c| proto::error::Code::try_from(c).ok())
}

fn one(req: v0::Request) -> Vec<u8> {
    proto::Messages {
        messages: vec![proto::Message {
            revision: 6,
            error: None,
            message_0: Some(MessageV0 { request: Some(req), response: None, message_id: Some("m".into()) }),
        }],
        encrypted: None,
    }
    .encode_to_vec()
}

fn status(reply: &proto::Messages) -> (bool, String) {
    let r = reply.messages[0].message_0.as_ref().unwrap().response.as_ref().unwrap();
    (r.status.status, r.status.error.as_ref().and_then(|e| e.description.clone()).unwrap_or_default())
}

type RuleEdit = Box<dyn Fn(&mut v0::Rule)>;

fn valid_nic() -> v0::Nic {
    v0::Nic { id: "n".into(), mac: "52:54:00:00:00:01".into(), vni: 1, ..Default::default() }
}

#[test]
fn garbage_empty_and_version_errors() {
    let mut d = Dispatcher::default();
    let mut h = MemoryHandler::new();
    let r = decode(&d.handle_bytes(&mut h, &[0xff, 0xff, 0xff]).bytes);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(code(&r.messages[0]), Some(proto::error::Code::ParseError));
    assert_eq!(r.messages[0].revision, 6);
    let r = decode(&d.handle_bytes(&mut h, &[]).bytes);
    assert_eq!(code(&r.messages[0]), Some(proto::error::Code::Rejected));
    let nov = proto::Messages {
        messages: vec![proto::Message { revision: 1, error: None, message_0: None }],
        encrypted: None,
    };
    let r = decode(&d.handle_bytes(&mut h, &nov.encode_to_vec()).bytes);
    assert_eq!(code(&r.messages[0]), Some(proto::error::Code::VersionNotManaged));
    // message_0 without request, and with an empty request
    let m = |req: Option<v0::Request>| {
        proto::Messages {
            messages: vec![proto::Message {
                revision: 6,
                error: None,
                message_0: Some(MessageV0 { request: req, response: None, message_id: None }),
            }],
            encrypted: None,
        }
        .encode_to_vec()
    };
    let r = decode(&d.handle_bytes(&mut h, &m(None)).bytes);
    assert_eq!(status(&r), (false, "MessageV0 appears to not have any request inside".into()));
    let r = decode(&d.handle_bytes(&mut h, &m(Some(v0::Request::default()))).bytes);
    assert_eq!(status(&r), (false, "MessageV0 appears to not have any request".into()));
}

#[test]
fn missing_required_fields_are_errors_and_change_nothing() {
    let mut d = Dispatcher::default();
    let mut h = MemoryHandler::new();
    // Hand-made wire bytes: Messages{ messages{ revision:6 message_0{ request{ nic_add{ id:"x" } } } } }
    // nic_add lacks the required mac and vni.
    let nic = [0x0a, 0x01, b'x'];
    let mut req = vec![0x0a, nic.len() as u8];
    req.extend_from_slice(&nic);
    let mut m0 = vec![0x0a, req.len() as u8];
    m0.extend_from_slice(&req);
    m0.extend_from_slice(&[0x1a, 0x02, b'i', b'd']);
    let mut msg = vec![0x08, 0x06, 0x1a, m0.len() as u8];
    msg.extend_from_slice(&m0);
    let mut wire = vec![0x0a, msg.len() as u8];
    wire.extend_from_slice(&msg);
    // A second, valid message in the same request is still served.
    wire.extend_from_slice(&one(v0::Request { nic_list: Some(true), ..Default::default() }));
    let r = decode(&d.handle_bytes(&mut h, &wire).bytes);
    assert_eq!(r.messages.len(), 2);
    assert_eq!(code(&r.messages[0]), Some(proto::error::Code::ParseError));
    let m0 = r.messages[0].message_0.as_ref().expect("details in message_0");
    assert_eq!(m0.message_id.as_deref(), Some("id"));
    let desc = m0.response.as_ref().unwrap().status.error.as_ref().unwrap().description.clone().unwrap();
    assert!(desc.contains("nic_add.mac") && desc.contains("nic_add.vni"), "{desc}");
    assert!(r.messages[1].message_0.as_ref().unwrap().response.as_ref().unwrap().status.status);
    assert_eq!(h.model, Model::new());

    // Missing revision in a Message.
    let wire = [0x0a, 0x02, 0x1a, 0x00];
    let r = decode(&d.handle_bytes(&mut h, &wire).bytes);
    assert_eq!(code(&r.messages[0]), Some(proto::error::Code::ParseError));
}

#[test]
fn unknown_fields_are_ignored() {
    let mut d = Dispatcher::default();
    let mut h = MemoryHandler::new();
    let mut wire = one(v0::Request { nic_list: Some(true), ..Default::default() });
    // Append an unknown field 99 (varint) to the outer Messages.
    wire.extend_from_slice(&[0x98, 0x06, 0x01]);
    let r = decode(&d.handle_bytes(&mut h, &wire).bytes);
    assert!(status(&r).0);
}

#[test]
fn validation_errors_use_butterfly_descriptions() {
    let mut d = Dispatcher::default();
    let mut h = MemoryHandler::new();
    let mut send = |req: v0::Request| status(&decode(&d.handle_bytes(&mut h, &one(req)).bytes));
    let nic = |f: &dyn Fn(&mut v0::Nic)| {
        let mut n = valid_nic();
        f(&mut n);
        v0::Request { nic_add: Some(n), ..Default::default() }
    };
    // The last one is 17 bytes with a character across byte 2: an error, not a panic caught
    // by the dispatcher (which would answer "internal error").
    for mac in
        ["52:54:00:00:00", "52-54-00-00-00-01", "52:54:00:00:00:0g", "52:54:00:00:00:011", "0é:00:00:00:00:0"]
    {
        let (ok, desc) = send(nic(&|n| n.mac = mac.into()));
        assert!(!ok && desc.starts_with("Bad NIC format"), "{mac}: {desc}");
    }
    for id in ["", ".", "..", "../x", "a/b", "/../../etc/x", "n\0"] {
        let (ok, desc) = send(nic(&|n| n.id = id.into()));
        assert!(!ok && desc.starts_with("Bad NIC format"), "id {id:?}: {desc}");
    }
    let (ok, desc) = send(nic(&|n| n.vni = 1 << 24));
    assert!(!ok && desc.starts_with("Bad NIC format"), "{desc}");
    assert!(send(nic(&|n| n.vni = (1 << 24) - 1)).0);
    let (ok, desc) = send(nic(&|n| n.ip = vec!["1.2.3.4".into(), "01.2.3.4".into()]));
    assert_eq!((ok, desc.as_str()), (false, "can't convert \"01.2.3.4\" to IP"));
    let (ok, desc) = send(nic(&|n| {
        n.r#type = Some(2);
        n.ip = vec!["1.1.1.1".into()];
    }));
    assert!(!ok && desc.starts_with("Bad NIC format"), "{desc}");

    let rule = |f: &dyn Fn(&mut v0::Rule)| {
        let mut r = v0::Rule {
            direction: 0,
            protocol: 6,
            port_start: Some(1),
            port_end: Some(2),
            cidr: Some(v0::Cidr { address: "10.0.0.0".into(), mask_size: 8 }),
            security_group: None,
        };
        f(&mut r);
        v0::Request {
            sg_rule_add: Some(v0::SgRuleAddReq { sg_id: "sg".into(), rule: r }),
            ..Default::default()
        }
    };
    let bad_rules: Vec<(&str, RuleEdit)> = vec![
        ("protocol 256", Box::new(|r| r.protocol = 256)),
        ("protocol -2", Box::new(|r| r.protocol = -2)),
        ("missing port", Box::new(|r| r.port_end = None)),
        ("port > 65535", Box::new(|r| r.port_end = Some(65536))),
        ("start > end", Box::new(|r| r.port_start = Some(3))),
        ("cidr and sg", Box::new(|r| r.security_group = Some("x".into()))),
        ("neither", Box::new(|r| r.cidr = None)),
        ("v4 mask 33", Box::new(|r| r.cidr.as_mut().unwrap().mask_size = 33)),
        ("direction 7", Box::new(|r| r.direction = 7)),
    ];
    for (what, f) in &bad_rules {
        let (ok, desc) = send(rule(f.as_ref()));
        assert!(!ok && desc.starts_with("Bad Security Group rule format"), "{what}: {desc}");
    }
    let (ok, desc) = send(rule(&|r| r.cidr.as_mut().unwrap().address = "10.0.0".into()));
    assert_eq!((ok, desc.as_str()), (false, "can't convert \"10.0.0\" to IP"));
    assert!(
        send(rule(&|r| {
            r.cidr = Some(v0::Cidr { address: "::".into(), mask_size: 128 });
        }))
        .0
    );
    // Nothing invalid was stored: only the last valid rule and the VNI max NIC.
    assert_eq!(h.model.sg("sg").unwrap().rules.len(), 1);
    assert_eq!(h.model.nic_ids(), vec!["n".to_string()]);
}

#[test]
fn oversized_and_too_many_messages_rejected() {
    let mut d = Dispatcher::new(DispatchConfig { max_request_bytes: 1000, max_messages: 3, key: None });
    let mut h = MemoryHandler::new();
    let mut big = valid_nic();
    big.id = "x".repeat(2000);
    let r =
        decode(&d.handle_bytes(&mut h, &one(v0::Request { nic_add: Some(big), ..Default::default() })).bytes);
    assert_eq!(code(&r.messages[0]), Some(proto::error::Code::Rejected));
    let msg = proto::Message {
        revision: 6,
        error: None,
        message_0: Some(MessageV0 {
            request: Some(v0::Request { nic_add: Some(valid_nic()), ..Default::default() }),
            response: None,
            message_id: None,
        }),
    };
    let four = proto::Messages { messages: vec![msg; 4], encrypted: None };
    let r = decode(&d.handle_bytes(&mut h, &four.encode_to_vec()).bytes);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(code(&r.messages[0]), Some(proto::error::Code::Rejected));
    assert_eq!(h.model, Model::new());
}

#[test]
fn server_answers_oversized_request_over_zmq_and_a_flood() {
    let server = common::spawn(butterfly_api::ServerConfig {
        endpoint: "tcp://127.0.0.1:0".into(),
        dispatch: DispatchConfig { max_request_bytes: 64 * 1024, ..Default::default() },
        ..Default::default()
    });
    let c = common::client(server.endpoint());
    // Between the application limit and the transport limit: REJECTED reply.
    let raw = c.request_raw(&vec![0u8; 100 * 1024]).unwrap();
    assert_eq!(code(&decode(&raw).messages[0]), Some(proto::error::Code::Rejected));
    // Flood: 2000 requests from 4 threads, each answered.
    let ep = server.endpoint().to_string();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let ep = ep.clone();
            std::thread::spawn(move || {
                let c = common::client(&ep);
                for i in 0..500 {
                    let raw = if i % 2 == 0 {
                        vec![0xff; 3]
                    } else {
                        one(v0::Request { sg_list: Some(true), ..Default::default() })
                    };
                    let r = decode(&c.request_raw(&raw).unwrap());
                    assert_eq!(r.messages.len(), 1, "thread {t} request {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (h, _) = server.stop().unwrap();
    assert_eq!(h.model, Model::new());
}

/// A multipart request (not part of the protocol) is refused with REJECTED, whatever its
/// number of parts, and the server goes on answering.
#[test]
fn multipart_requests_are_rejected() {
    let server = common::spawn_default();
    let ctx = zmq::Context::new();
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_rcvtimeo(10_000).unwrap();
    req.connect(server.endpoint()).unwrap();
    for parts in [2usize, 1000] {
        let frames: Vec<Vec<u8>> = (0..parts).map(|i| vec![i as u8; 16]).collect();
        req.send_multipart(frames, 0).unwrap();
        let reply = req.recv_bytes(0).expect("a reply to a multipart request");
        assert_eq!(code(&decode(&reply).messages[0]), Some(proto::error::Code::Rejected), "{parts} parts");
    }
    req.send(one(v0::Request { sg_list: Some(true), ..Default::default() }), 0).unwrap();
    let reply = decode(&req.recv_bytes(0).unwrap());
    assert!(status(&reply).0, "a normal request after them is served");
    server.stop().unwrap();
}

#[test]
fn stop_flag_is_honoured_quickly() {
    let server = common::spawn_default();
    let t = std::time::Instant::now();
    server.stop().unwrap();
    assert!(t.elapsed() < std::time::Duration::from_millis(500), "{:?}", t.elapsed());
}

#[test]
fn panicking_handler_gives_internal_error() {
    struct Bomb(MemoryHandler);
    impl butterfly_api::Handler for Bomb {
        fn nic_add(
            &mut self,
            _: butterfly_api::NicSpec,
        ) -> butterfly_api::HandlerResult<butterfly_api::NicInfo> {
            panic!("boom")
        }
        fn nic_update(&mut self, u: butterfly_api::NicUpdate) -> butterfly_api::HandlerResult<()> {
            self.0.nic_update(u)
        }
        fn nic_del(&mut self, id: &str) -> butterfly_api::HandlerResult<()> {
            self.0.nic_del(id)
        }
        fn nic_list(&mut self) -> butterfly_api::HandlerResult<Vec<String>> {
            self.0.nic_list()
        }
        fn nic_details(
            &mut self,
            id: Option<&str>,
        ) -> butterfly_api::HandlerResult<Vec<butterfly_api::NicInfo>> {
            self.0.nic_details(id)
        }
        fn nic_stats(&mut self, id: &str) -> butterfly_api::HandlerResult<butterfly_api::NicStats> {
            self.0.nic_stats(id)
        }
        fn nic_export(&mut self, id: &str) -> butterfly_api::HandlerResult<Vec<u8>> {
            self.0.nic_export(id)
        }
        fn sg_add(&mut self, sg: butterfly_api::SecurityGroup) -> butterfly_api::HandlerResult<()> {
            self.0.sg_add(sg)
        }
        fn sg_del(&mut self, id: &str) -> butterfly_api::HandlerResult<()> {
            self.0.sg_del(id)
        }
        fn sg_list(&mut self) -> butterfly_api::HandlerResult<Vec<String>> {
            self.0.sg_list()
        }
        fn sg_details(
            &mut self,
            id: Option<&str>,
        ) -> butterfly_api::HandlerResult<Vec<butterfly_api::SecurityGroup>> {
            self.0.sg_details(id)
        }
        fn sg_rule_add(&mut self, s: &str, r: butterfly_api::Rule) -> butterfly_api::HandlerResult<()> {
            self.0.sg_rule_add(s, r)
        }
        fn sg_rule_del(&mut self, s: &str, r: butterfly_api::Rule) -> butterfly_api::HandlerResult<()> {
            self.0.sg_rule_del(s, r)
        }
        fn sg_rule_list(&mut self, s: &str) -> butterfly_api::HandlerResult<Vec<butterfly_api::Rule>> {
            self.0.sg_rule_list(s)
        }
        fn sg_member_add(&mut self, s: &str, m: std::net::IpAddr) -> butterfly_api::HandlerResult<()> {
            self.0.sg_member_add(s, m)
        }
        fn sg_member_del(&mut self, s: &str, m: std::net::IpAddr) -> butterfly_api::HandlerResult<()> {
            self.0.sg_member_del(s, m)
        }
        fn sg_member_list(&mut self, s: &str) -> butterfly_api::HandlerResult<Vec<std::net::IpAddr>> {
            self.0.sg_member_list(s)
        }
        fn app_config(&mut self, c: butterfly_api::AppConfig) -> butterfly_api::HandlerResult<()> {
            self.0.app_config(c)
        }
    }
    let mut d = Dispatcher::default();
    let mut h = Bomb(MemoryHandler::new());
    let r = decode(
        &d.handle_bytes(&mut h, &one(v0::Request { nic_add: Some(valid_nic()), ..Default::default() })).bytes,
    );
    assert_eq!(code(&r.messages[0]), Some(proto::error::Code::InternalError));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut d = Dispatcher::default();
        let mut h = MemoryHandler::new();
        let reply = d.handle_bytes(&mut h, &bytes);
        let r = proto::Messages::decode(reply.bytes.as_slice()).unwrap();
        prop_assert!(!r.messages.is_empty());
        // INTERNAL_ERROR is a panic the dispatcher caught: the reference handler has none.
        prop_assert!(r.messages.iter().all(|m| code(m) != Some(proto::error::Code::InternalError)));
    }

    #[test]
    fn mutated_vni_requests_never_panic(pos in 0usize..48, val in any::<u8>(), cut in 0usize..60) {
        let bum = v0::VniBum { vni: Some(42), mode: Some(2), group: None, flood: vec!["10.0.0.2".into(), "10.0.0.3".into()] };
        let mut wire = one(v0::Request { vni_set: Some(bum), ..Default::default() });
        if pos < wire.len() { wire[pos] = val; }
        wire.truncate(cut.max(1));
        let mut d = Dispatcher::default();
        let mut h = MemoryHandler::new();
        let reply = d.handle_bytes(&mut h, &wire);
        let r = proto::Messages::decode(reply.bytes.as_slice()).unwrap();
        prop_assert!(!r.messages.is_empty());
        prop_assert!(r.messages.iter().all(|m| code(m) != Some(proto::error::Code::InternalError)));
        let ok = r.messages.iter().any(|m| m.message_0.as_ref().and_then(|m0| m0.response.as_ref()).is_some_and(|x| x.status.status));
        if !ok { prop_assert_eq!(&h.model, &Model::new()); }
    }

    #[test]
    fn mutated_valid_requests_never_panic(pos in 0usize..64, val in any::<u8>(), cut in 0usize..80) {
        let mut nic = valid_nic();
        nic.ip = vec!["10.0.0.1".into(), "::1".into()];
        let mut wire = one(v0::Request { nic_add: Some(nic), ..Default::default() });
        if pos < wire.len() { wire[pos] = val; }
        wire.truncate(cut.max(1));
        let mut d = Dispatcher::default();
        let mut h = MemoryHandler::new();
        let reply = d.handle_bytes(&mut h, &wire);
        let r = proto::Messages::decode(reply.bytes.as_slice()).unwrap();
        prop_assert!(!r.messages.is_empty());
        prop_assert!(r.messages.iter().all(|m| code(m) != Some(proto::error::Code::InternalError)));
        // State changes only when the reply reports success.
        let ok = r.messages.iter().any(|m| m.message_0.as_ref().and_then(|m0| m0.response.as_ref()).is_some_and(|x| x.status.status));
        if !ok { prop_assert_eq!(&h.model, &Model::new()); }
    }
}
