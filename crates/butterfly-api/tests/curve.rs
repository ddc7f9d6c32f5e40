//! CURVE security. The workspace links Debian's libzmq (built with libsodium, see
//! `.cargo/config.toml`), so CURVE is always there: an authorised client is served, and every
//! client without the right keys gets a clear error, quickly, never a reply.

mod common;
use butterfly_api::transport::{curve_available, curve_key, curve_keypair};
use butterfly_api::{Client, ClientConfig, CurveClient, CurveServer, ServerConfig, TransportError};
use std::time::{Duration, Instant};

#[test]
fn curve_auth_refuses_clients_without_the_right_keys() {
    assert!(
        curve_available(),
        "the linked libzmq has no CURVE: is libzmq3-dev installed (scripts/setup.sh) and \
         .cargo/config.toml in place?"
    );
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
    let mk = |server_key: &str, p: &str, s: &str| {
        Client::new(ClientConfig {
            endpoint: server.endpoint().to_string(),
            timeout: Some(Duration::from_secs(5)),
            key: None,
            curve: Some(CurveClient {
                server_key: curve_key(server_key).unwrap(),
                public_key: curve_key(p).unwrap(),
                secret_key: curve_key(s).unwrap(),
            }),
        })
        .unwrap()
    };
    let sg_list = || butterfly_api::pb::message_v0::Request { sg_list: Some(true), ..Default::default() };
    let good = mk(&spub, &cpub, &csec);
    assert!(good.call(sg_list()).unwrap().status.status);
    // Each refusal comes well before the 5 s timeout, and says why.
    let t = Instant::now();
    let e = mk(&spub, &opub, &osec).call(sg_list());
    assert!(matches!(e, Err(TransportError::CurveRefused { status: 400, .. })), "{e:?}");
    assert!(e.unwrap_err().to_string().contains("not among the daemon's authorised clients"));
    // The authorised client's key pair with another server key: the server cannot decrypt.
    let e = mk(&cpub, &cpub, &csec).call(sg_list());
    assert!(matches!(e, Err(TransportError::Handshake { client_curve: true, .. })), "{e:?}");
    // A plain (non-CURVE) client.
    let plain = Client::new(ClientConfig {
        endpoint: server.endpoint().to_string(),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    })
    .unwrap();
    let e = plain.call(sg_list());
    assert!(
        matches!(
            e,
            Err(TransportError::SecurityMismatch { client_curve: false, .. })
                | Err(TransportError::Handshake { client_curve: false, .. })
        ),
        "{e:?}"
    );
    assert!(e.unwrap_err().to_string().contains("--curve-server-key"));
    assert!(t.elapsed() < Duration::from_secs(5), "refusals are not timeouts: {:?}", t.elapsed());
    // And a CURVE client of a plain server.
    let plain_server = common::spawn_default();
    let c = Client::new(ClientConfig {
        endpoint: plain_server.endpoint().to_string(),
        timeout: Some(Duration::from_secs(5)),
        key: None,
        curve: Some(CurveClient {
            server_key: curve_key(&spub).unwrap(),
            public_key: curve_key(&cpub).unwrap(),
            secret_key: curve_key(&csec).unwrap(),
        }),
    })
    .unwrap();
    let e = c.call(sg_list());
    assert!(
        matches!(
            e,
            Err(TransportError::SecurityMismatch { client_curve: true, .. })
                | Err(TransportError::Handshake { client_curve: true, .. })
        ),
        "{e:?}"
    );
    server.stop().unwrap();
    plain_server.stop().unwrap();
}
