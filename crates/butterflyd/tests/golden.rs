//! Butterfly's API scenarios (in the spirit of its tests/api/MessageV0) sent to the real
//! daemon and to butterfly-api's reference handler: the replies must be identical, except
//! for what only a real data plane knows (byte counters, the DOT graph, dates). Exported
//! connection tables are compared: a NIC without connections exports empty bytes, as
//! Butterfly did.

mod common;

use butterfly_api::pb::proto;
use butterfly_api::{Client, ClientConfig, MemoryHandler, Server, ServerConfig};
use common::*;
use std::time::Duration;

fn normalise(mut m: proto::Messages) -> proto::Messages {
    for msg in &mut m.messages {
        if let Some(r) = msg.message_0.as_mut().and_then(|m0| m0.response.as_mut()) {
            for n in &mut r.nic_details {
                n.packet_trace_path = None;
            }
            r.nic_stats = None;
            if let Some(s) = r.app_status.as_mut() {
                s.start_date = None;
                s.current_date = None;
                s.request_counter = None;
                s.graph_dot = None;
            }
        }
    }
    m
}

fn send(endpoint: &str, text: &str) -> proto::Messages {
    let c = Client::new(ClientConfig {
        endpoint: endpoint.to_string(),
        timeout: Some(Duration::from_secs(10)),
        ..ClientConfig::default()
    })
    .unwrap();
    normalise(c.request(&butterfly_api::text::from_text(text).expect("valid request")).expect("reply"))
}

/// Runs `requests` on the daemon and on the reference handler and compares.
fn same_as_reference(requests: &str) {
    let d = Daemon::start(&["--no-state"]);
    let mut reference = MemoryHandler::new();
    reference.socket_dir = d.sockets();
    let server = Server::spawn(
        ServerConfig { endpoint: "tcp://127.0.0.1:0".into(), ..ServerConfig::default() },
        reference,
    )
    .unwrap();
    let want = send(server.endpoint(), requests);
    let got = send(&d.endpoint, requests);
    server.stop().unwrap();
    if got != want {
        panic!(
            "daemon differs from the reference\n--- daemon ---\n{}\n--- reference ---\n{}",
            butterfly_api::text::to_text(&got).unwrap(),
            butterfly_api::text::to_text(&want).unwrap()
        );
    }
    // And the replies say something: at least one success.
    assert!(butterfly_api::text::to_text(&got).unwrap().contains("status: true"));
}

#[test]
fn nics_add_list_details_update_replace_delete() {
    same_as_reference(
        r#"
    messages { revision: 0 message_0 { message_id: "m1" request { nic_add { id: "g-2" mac: "52:54:00:12:34:02" vni: 42
        ip: "2001:0db8:0000:85a3:0000:0000:ac1f:8001" ip: "42.0.0.2" ip: "42.0.0.2" security_group: "sg-1" } } } }
    messages { revision: 0 message_0 { request { nic_add { id: "g-1" mac: "52:54:00:12:34:01" vni: 1337
        ip: "42.0.0.1" ip_anti_spoof: true path: "ignored" } } } }
    messages { revision: 0 message_0 { request { nic_list: true } } }
    messages { revision: 0 message_0 { request { nic_details: "g-2" } } }
    messages { revision: 0 message_0 { request { nic_update { id: "g-2" ip: "10.0.0.9" security_group: "" ip_anti_spoof: true } } } }
    messages { revision: 0 message_0 { request { nic_details: "" } } }
    messages { revision: 0 message_0 { request { nic_stats: "g-1" } } }
    messages { revision: 0 message_0 { request { nic_export: "g-1" } } }
    messages { revision: 0 message_0 { request { nic_stats: "g-9" } } }
    messages { revision: 0 message_0 { request { nic_update { id: "g-9" } } } }
    messages { revision: 0 message_0 { request { nic_add { id: "g-1" mac: "52:54:00:12:34:0a" vni: 2 } } } }
    messages { revision: 0 message_0 { request { nic_details: "g-1" } } }
    messages { revision: 0 message_0 { request { nic_del: "g-1" } } }
    messages { revision: 0 message_0 { request { nic_del: "g-1" } } }
    messages { revision: 0 message_0 { request { nic_del: "never-existed" } } }
    messages { revision: 0 message_0 { request { nic_add { id: "bad" mac: "52:54:00:12:34" vni: 1 } } } }
    messages { revision: 0 message_0 { request { nic_add { id: "bad" mac: "52:54:00:12:34:0b" vni: 16777216 } } } }
    messages { revision: 0 message_0 { request { nic_add { id: "bad" mac: "52:54:00:12:34:0b" vni: 1 ip: "10.0.0.256" } } } }
    messages { revision: 0 message_0 { request { nic_list: true } } }
    "#,
    );
}

#[test]
fn security_groups_rules_and_members() {
    same_as_reference(
        r#"
    messages { revision: 0 message_0 { request { nic_add { id: "s-1" mac: "52:54:00:12:35:01" vni: 7 ip: "10.7.0.1" security_group: "sg-a" } } } }
    messages { revision: 0 message_0 { request { sg_add { id: "sg-a" member: "10.7.0.9" member: "10.7.0.9"
        rule { direction: INBOUND protocol: 6 port_start: 22 port_end: 22 cidr { address: "0.0.0.0" mask_size: 0 } }
        rule { direction: INBOUND protocol: -1 security_group: "sg-b" } } } } }
    messages { revision: 0 message_0 { request { sg_add { id: "sg-b" member: "2001:0db8::0001" } } } }
    messages { revision: 0 message_0 { request { sg_list: true } } }
    messages { revision: 0 message_0 { request { sg_rule_add { sg_id: "sg-a" rule { direction: OUTBOUND protocol: 17
        port_start: 53 port_end: 53 cidr { address: "10.0.0.0" mask_size: 8 } } } } } }
    messages { revision: 0 message_0 { request { sg_rule_add { sg_id: "sg-a" rule { direction: OUTBOUND protocol: 17
        port_start: 53 port_end: 53 cidr { address: "10.0.0.0" mask_size: 8 } } } } } }
    messages { revision: 0 message_0 { request { sg_rule_list: "sg-a" } } }
    messages { revision: 0 message_0 { request { sg_member_add { sg_id: "sg-b" member: "10.7.0.20" } } } }
    messages { revision: 0 message_0 { request { sg_member_list: "sg-b" } } }
    messages { revision: 0 message_0 { request { sg_member_del { sg_id: "sg-b" member: "2001:db8::1" } } } }
    messages { revision: 0 message_0 { request { sg_rule_del { sg_id: "sg-a" rule { direction: INBOUND protocol: 6
        port_start: 22 port_end: 22 cidr { address: "0.0.0.0" mask_size: 0 } } } } } }
    messages { revision: 0 message_0 { request { sg_rule_add { sg_id: "sg-new" rule { direction: INBOUND protocol: 1
        cidr { address: "10.0.0.0" mask_size: 33 } } } } } }
    messages { revision: 0 message_0 { request { sg_rule_add { sg_id: "sg-new" rule { direction: INBOUND protocol: 6
        port_start: 80 cidr { address: "10.0.0.0" mask_size: 8 } } } } } }
    messages { revision: 0 message_0 { request { sg_details: "" } } }
    messages { revision: 0 message_0 { request { sg_del: "sg-b" } } }
    messages { revision: 0 message_0 { request { sg_del: "sg-b" } } }
    messages { revision: 0 message_0 { request { sg_rule_list: "sg-b" } } }
    messages { revision: 0 message_0 { request { sg_details: "sg-b" } } }
    messages { revision: 0 message_0 { request { nic_details: "s-1" } } }
    "#,
    );
}

#[test]
fn app_config_status_and_envelope_rules() {
    same_as_reference(
        r#"
    messages { revision: 0 message_0 { message_id: "cfg-1" request { app_config { log_level: "debug" } } } }
    messages { revision: 0 message_0 { message_id: "cfg-2" request { app_config { log_level: "verbose" } } } }
    messages { revision: 3 message_0 { request { app_status: true } } }
    messages { revision: 0 }
    messages { revision: 0 message_0 { } }
    "#,
    );
}
