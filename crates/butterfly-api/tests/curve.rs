//! CURVE security. With the default bundled libzmq (built without CURVE) the
//! test checks that asking for CURVE fails cleanly; built against Debian's
//! libzmq (see README, "CURVE"), it runs a full authorised / unauthorised
//! client exchange. `scripts/test-curve.sh` runs the second variant.

mod common;
use butterfly_api::transport::{curve_available, curve_key, curve_keypair};
use butterfly_api::{Client, ClientConfig, CurveClient, CurveServer, ServerConfig, TransportError};
use std::time::Duration;

#[test]
fn curve_auth_or_clean_error() {
    if std::env::var("BUTTERFLY_REQUIRE_CURVE").is_ok() {
        assert!(curve_available(), "BUTTERFLY_REQUIRE_CURVE set but libzmq has no CURVE");
    }
    if !curve_available() {
        assert!(matches!(curve_keypair(), Err(TransportError::CurveUnavailable)));
        let r = butterfly_api::Server::bind(ServerConfig {
            endpoint: "tcp://127.0.0.1:0".into(),
            curve: Some(CurveServer { secret_key: [1; 32], authorized_clients: None }),
            ..Default::default()
        });
        assert!(matches!(r, Err(TransportError::CurveUnavailable)));
        return;
    }
    let (spub, ssec) = curve_keypair().unwrap();
    let (cpub, csec) = curve_keypair().unwrap();
    let (opub, osec) = curve_keypair().unwrap();
    let server = common::spawn(ServerConfig {
        endpoint: "tcp://127.0.0.1:0".into(),
        curve: Some(CurveServer {
            secret_key: curve_key(&ssec).unwrap(),
            authorized_clients: Some(vec![curve_key(&cpub).unwrap()]),
        }),
        ..Default::default()
    });
    let mk = |p: &str, s: &str| {
        Client::new(ClientConfig {
            endpoint: server.endpoint().to_string(),
            timeout: Some(Duration::from_millis(1500)),
            key: None,
            curve: Some(CurveClient {
                server_key: curve_key(&spub).unwrap(),
                public_key: curve_key(p).unwrap(),
                secret_key: curve_key(s).unwrap(),
            }),
        })
        .unwrap()
    };
    let good = mk(&cpub, &csec);
    let r = good
        .call(butterfly_api::pb::message_v0::Request { sg_list: Some(true), ..Default::default() })
        .unwrap();
    assert!(r.status.status);
    let other = mk(&opub, &osec);
    let e = other.call(butterfly_api::pb::message_v0::Request { sg_list: Some(true), ..Default::default() });
    assert!(matches!(e, Err(TransportError::Timeout { .. })), "{e:?}");
    // A plain (non-CURVE) client gets nothing either.
    let plain = Client::new(ClientConfig {
        endpoint: server.endpoint().to_string(),
        timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    })
    .unwrap();
    assert!(plain.request_raw(b"").is_err());
    server.stop().unwrap();
}
