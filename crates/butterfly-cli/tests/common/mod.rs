//! Shared helpers for the integration tests.
#![allow(dead_code)]

use butterfly_api::pb::proto;
use butterfly_api::{Client, ClientConfig, MemoryHandler, RunningServer, Server, ServerConfig};
use std::path::PathBuf;
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// The project's Python venv interpreter; panics with a clear message if missing.
pub fn python() -> PathBuf {
    let p = repo_root().join(".venv/bin/python3");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (or scripts/setup-python.sh) to create the Python venv used by the tests",
        p.display()
    );
    p
}

pub fn spawn(config: ServerConfig) -> RunningServer<MemoryHandler> {
    Server::spawn(config, MemoryHandler::new()).expect("server starts")
}

pub fn spawn_default() -> RunningServer<MemoryHandler> {
    spawn(ServerConfig { endpoint: "tcp://127.0.0.1:0".into(), ..Default::default() })
}

pub fn client(endpoint: &str) -> Client {
    Client::new(ClientConfig {
        endpoint: endpoint.to_string(),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    })
    .expect("client")
}

/// Sends a text-format request and returns the reply.
pub fn send_text(c: &Client, text: &str) -> proto::Messages {
    let req = butterfly_api::text::from_text(text).expect("valid request text");
    c.request(&req).expect("reply")
}

/// Clears fields that depend on the environment (pid-based pcap paths,
/// dates) so replies can be compared with expectations.
pub fn normalise(mut m: proto::Messages) -> proto::Messages {
    for msg in &mut m.messages {
        if let Some(r) = msg.message_0.as_mut().and_then(|m0| m0.response.as_mut()) {
            for n in &mut r.nic_details {
                n.packet_trace_path = None;
            }
            if let Some(s) = r.app_status.as_mut() {
                s.start_date = None;
                s.current_date = None;
            }
        }
    }
    m
}

/// Runs a text request on a fresh server and compares the normalised reply
/// with the expected text (parsed, so formatting does not matter).
pub fn scenario(input: &str, expected: &str) {
    let server = spawn_default();
    let c = client(server.endpoint());
    let got = normalise(send_text(&c, input));
    let want = butterfly_api::text::from_text(expected).expect("valid expected text");
    if got != want {
        panic!(
            "reply differs\n--- got ---\n{}\n--- want ---\n{}",
            butterfly_api::text::to_text(&got).unwrap(),
            butterfly_api::text::to_text(&want).unwrap()
        );
    }
    server.stop().expect("server stops");
}
