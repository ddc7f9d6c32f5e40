//! Golden API scenarios in the spirit of Butterfly's tests/api/MessageV0:
//! a text-format request is sent to an in-process server backed by the
//! reference handler, and the reply is compared with the expected text.

mod common;
use common::scenario;

const OK: &str = "messages { revision: 6 message_0 { response { status { status: true } } } }\n";

fn ok(n: usize) -> String {
    OK.repeat(n)
}

#[test]
fn app_config_and_message_id_echo() {
    scenario(
        r#"
        messages { revision: 0 message_0 { message_id: "cfg-1" request { app_config { log_level: "debug" } } } }
        messages { revision: 0 message_0 { message_id: "cfg-2" request { app_config { log_level: "verbose" } } } }
        messages { revision: 3 message_0 { request { app_config { } } } }
        "#,
        r#"
        messages { revision: 6 message_0 { message_id: "cfg-1" response { status { status: true } } } }
        messages { revision: 6 message_0 { message_id: "cfg-2" response { status { status: false
            error { description: "Application configuration failed: log level: failed " } } } } }
        messages { revision: 6 message_0 { response { status { status: true } } } }
        "#,
    );
}

#[test]
fn nic_add_list_details_update_stats_export() {
    let input = r#"
    messages { revision: 0 message_0 { request { nic_add { id: "nic-2" mac: "52:54:00:12:34:02" vni: 42
        ip: "2001:0db8:0000:85a3:0000:0000:ac1f:8001" ip: "42.0.0.2" ip: "42.0.0.2" security_group: "sg-1" } } } }
    messages { revision: 0 message_0 { request { nic_add { id: "nic-1" mac: "52:54:00:12:34:01" vni: 1337
        ip: "42.0.0.1" ip_anti_spoof: true type: TAP path: "ignored" } } } }
    messages { revision: 0 message_0 { request { nic_list: true } } }
    messages { revision: 0 message_0 { request { nic_details: "nic-2" } } }
    messages { revision: 0 message_0 { request { nic_update { id: "nic-2" ip: "10.0.0.9" security_group: "" ip_anti_spoof: true } } } }
    messages { revision: 0 message_0 { request { nic_details: "" } } }
    messages { revision: 0 message_0 { request { nic_stats: "nic-1" } } }
    messages { revision: 0 message_0 { request { nic_export: "nic-1" } } }
    messages { revision: 0 message_0 { request { nic_stats: "nic-9" } } }
    messages { revision: 0 message_0 { request { nic_update { id: "nic-9" } } } }
    messages { revision: 0 message_0 { request { nic_details: "nic-9" } } }
    "#;
    let expected = r#"
    messages { revision: 6 message_0 { response { status { status: true } nic_add { path: "/tmp/qemu-vhost-nic-2" } } } }
    messages { revision: 6 message_0 { response { status { status: true } nic_add { path: "nic-1" } } } }
    messages { revision: 6 message_0 { response { status { status: true } nic_list: "nic-1" nic_list: "nic-2" } } }
    messages { revision: 6 message_0 { response { status { status: true } nic_details {
        id: "nic-2" mac: "52:54:00:12:34:02" vni: 42 ip: "2001:db8:0:85a3::ac1f:8001" ip: "42.0.0.2"
        security_group: "sg-1" ip_anti_spoof: false bypass_filtering: false type: VHOST_USER_SERVER
        path: "/tmp/qemu-vhost-nic-2" packet_trace: false } } } }
    messages { revision: 6 message_0 { response { status { status: true } } } }
    messages { revision: 6 message_0 { response { status { status: true }
      nic_details { id: "nic-1" mac: "52:54:00:12:34:01" vni: 1337 ip: "42.0.0.1" ip_anti_spoof: true
        bypass_filtering: false type: TAP path: "nic-1" packet_trace: false }
      nic_details { id: "nic-2" mac: "52:54:00:12:34:02" vni: 42 ip: "10.0.0.9" ip_anti_spoof: true
        bypass_filtering: false type: VHOST_USER_SERVER path: "/tmp/qemu-vhost-nic-2" packet_trace: false } } } }
    messages { revision: 6 message_0 { response { status { status: true } nic_stats { in: 0 out: 0 } } } }
    messages { revision: 6 message_0 { response { status { status: true } nic_export { fw_data { data: "" } } } } }
    messages { revision: 6 message_0 { response { status { status: false error { description: "NIC: nic-9 not found" } } } } }
    messages { revision: 6 message_0 { response { status { status: false error { description: "NIC does not exist with id nic-9" } } } } }
    messages { revision: 6 message_0 { response { status { status: false error { description: "NIC: nic-9 not found" } } } } }
    "#;
    scenario(input, expected);
}

#[test]
fn nic_readd_replaces_and_repeated_deletes_succeed() {
    let input = r#"
    messages { revision: 0 message_0 { request { nic_add { id: "a" mac: "52:54:00:12:34:01" vni: 1 ip: "1.1.1.1" } } } }
    messages { revision: 0 message_0 { request { nic_add { id: "a" mac: "52:54:00:12:34:0a" vni: 2 } } } }
    messages { revision: 0 message_0 { request { nic_details: "a" } } }
    messages { revision: 0 message_0 { request { nic_del: "a" } } }
    messages { revision: 0 message_0 { request { nic_del: "a" } } }
    messages { revision: 0 message_0 { request { nic_del: "never-existed" } } }
    messages { revision: 0 message_0 { request { nic_list: true } } }
    messages { revision: 0 message_0 { request { nic_add { id: "a" mac: "52:54:00:12:34:01" vni: 3 } } } }
    messages { revision: 0 message_0 { request { nic_list: true } } }
    "#;
    let expected = format!(
        r#"
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} nic_add {{ path: "/tmp/qemu-vhost-a" }} }} }} }}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} nic_add {{ path: "/tmp/qemu-vhost-a" }} }} }} }}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} nic_details {{ id: "a" mac: "52:54:00:12:34:0a"
        vni: 2 ip_anti_spoof: false bypass_filtering: false type: VHOST_USER_SERVER path: "/tmp/qemu-vhost-a" packet_trace: false }} }} }} }}
    {}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} }} }} }}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} nic_add {{ path: "/tmp/qemu-vhost-a" }} }} }} }}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} nic_list: "a" }} }} }}
    "#,
        ok(3)
    );
    scenario(input, &expected);
}

#[test]
fn sg_add_replace_delete() {
    let input = r#"
    messages { revision: 0 message_0 { request { sg_add { id: "sg-b" member: "10.0.0.1" } } } }
    messages { revision: 0 message_0 { request { sg_add { id: "sg-a" } } } }
    messages { revision: 0 message_0 { request { sg_list: true } } }
    messages { revision: 0 message_0 { request { sg_add { id: "sg-b" member: "10.0.0.2" member: "10.0.0.2"
        rule { direction: INBOUND protocol: 1 cidr { address: "0.0.0.0" mask_size: 0 } } } } } }
    messages { revision: 0 message_0 { request { sg_details: "sg-b" } } }
    messages { revision: 0 message_0 { request { sg_del: "sg-a" } } }
    messages { revision: 0 message_0 { request { sg_del: "sg-a" } } }
    messages { revision: 0 message_0 { request { sg_details: "" } } }
    messages { revision: 0 message_0 { request { sg_details: "sg-a" } } }
    "#;
    let expected = format!(
        r#"
    {}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} sg_list: "sg-a" sg_list: "sg-b" }} }} }}
    {}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} sg_details {{ id: "sg-b" member: "10.0.0.2"
        rule {{ direction: INBOUND protocol: 1 cidr {{ address: "0.0.0.0" mask_size: 0 }} }} }} }} }} }}
    {}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} sg_details {{ id: "sg-b" member: "10.0.0.2"
        rule {{ direction: INBOUND protocol: 1 cidr {{ address: "0.0.0.0" mask_size: 0 }} }} }} }} }} }}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: false error {{ description: "Sg not found" }} }} }} }} }}
    "#,
        ok(2),
        OK,
        ok(2)
    );
    scenario(input, &expected);
}

#[test]
fn rules_hash_order_ports_dropped_idempotent() {
    // Rule order is libstdc++'s hash of the rule key (Butterfly's order);
    // ports are only kept for TCP/UDP, so the protocol -1 rule sent with
    // ports 0-1024 is keyed without them (Butterfly keyed it with them and
    // listed it before the UDP rule: documented difference). Adding twice or
    // deleting twice is harmless.
    let input = r#"
    messages { revision: 0 message_0 { request { sg_add { id: "sg-1" member: "1.2.3.4"
        rule { direction: INBOUND protocol: 17 port_start: 0 port_end: 65535 cidr { address: "1.2.3.0" mask_size: 24 } }
        rule { direction: INBOUND protocol: 6 port_start: 0 port_end: 65535 security_group: "sg-42" } } } } }
    messages { revision: 0 message_0 { request { sg_rule_add { sg_id: "sg-1" rule { direction: INBOUND protocol: -1
        port_start: 0 port_end: 1024 cidr { address: "2001:0db8:0000:85a3:0000:0000:ac1f:8001" mask_size: 8 } } } } } }
    messages { revision: 0 message_0 { request { sg_rule_list: "sg-1" } } }
    messages { revision: 0 message_0 { request { sg_rule_add { sg_id: "sg-1" rule { direction: INBOUND protocol: 6
        port_start: 1000 port_end: 65535 security_group: "some-sg" } } } } }
    messages { revision: 0 message_0 { request { sg_rule_add { sg_id: "sg-1" rule { direction: INBOUND protocol: 6
        port_start: 1000 port_end: 65535 security_group: "some-sg" } } } } }
    messages { revision: 0 message_0 { request { sg_rule_list: "sg-1" } } }
    messages { revision: 0 message_0 { request { sg_rule_del { sg_id: "sg-1" rule { direction: INBOUND protocol: 6
        port_start: 1000 port_end: 65535 security_group: "some-sg" } } } } }
    messages { revision: 0 message_0 { request { sg_rule_del { sg_id: "sg-1" rule { direction: INBOUND protocol: 6
        port_start: 1000 port_end: 65535 security_group: "some-sg" } } } } }
    messages { revision: 0 message_0 { request { sg_rule_del { sg_id: "nope" rule { direction: INBOUND protocol: 1
        security_group: "x" } } } } }
    messages { revision: 0 message_0 { request { sg_rule_list: "sg-1" } } }
    messages { revision: 0 message_0 { request { sg_rule_list: "nope" } } }
    messages { revision: 0 message_0 { request { sg_rule_add { sg_id: "created" rule { direction: OUTBOUND protocol: 58
        cidr { address: "::" mask_size: 0 } } } } } }
    messages { revision: 0 message_0 { request { sg_rule_list: "created" } } }
    "#;
    let r_sg42 = r#"sg_rule_list { direction: INBOUND protocol: 6 port_start: 0 port_end: 65535 security_group: "sg-42" }"#;
    let r_v6 = r#"sg_rule_list { direction: INBOUND protocol: -1 cidr { address: "2001:db8:0:85a3::ac1f:8001" mask_size: 8 } }"#;
    let r_udp = r#"sg_rule_list { direction: INBOUND protocol: 17 port_start: 0 port_end: 65535 cidr { address: "1.2.3.0" mask_size: 24 } }"#;
    let r_some = r#"sg_rule_list { direction: INBOUND protocol: 6 port_start: 1000 port_end: 65535 security_group: "some-sg" }"#;
    let list = |rules: &[&str]| {
        format!(
            "messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} {} }} }} }}\n",
            rules.join(" ")
        )
    };
    let expected = format!(
        "{}{}{}{}{}{}{}{}{}",
        ok(2),
        list(&[r_sg42, r_udp, r_v6]),
        ok(2),
        list(&[r_sg42, r_udp, r_v6, r_some]),
        ok(3),
        list(&[r_sg42, r_udp, r_v6]),
        "messages { revision: 6 message_0 { response { status { status: false error { description: \"Security Group not found\" } } } } }\n",
        OK,
        "messages { revision: 6 message_0 { response { status { status: true } sg_rule_list { direction: OUTBOUND protocol: 58 cidr { address: \"::\" mask_size: 0 } } } } }\n",
    );
    scenario(input, &expected);
}

#[test]
fn members_canonicalised_dedup_idempotent() {
    let input = r#"
    messages { revision: 0 message_0 { request { sg_member_add { sg_id: "sg-m" member: "2001:0db8:0000:85a3:0000:0000:ac1f:8001" } } } }
    messages { revision: 0 message_0 { request { sg_member_add { sg_id: "sg-m" member: "2001:db8:0:85a3::ac1f:8001" } } } }
    messages { revision: 0 message_0 { request { sg_member_add { sg_id: "sg-m" member: "10.0.0.1" } } } }
    messages { revision: 0 message_0 { request { sg_member_list: "sg-m" } } }
    messages { revision: 0 message_0 { request { sg_member_del { sg_id: "sg-m" member: "2001:db8:0:85a3:0:0:ac1f:8001" } } } }
    messages { revision: 0 message_0 { request { sg_member_del { sg_id: "sg-m" member: "2001:db8:0:85a3:0:0:ac1f:8001" } } } }
    messages { revision: 0 message_0 { request { sg_member_del { sg_id: "missing" member: "1.1.1.1" } } } }
    messages { revision: 0 message_0 { request { sg_member_list: "sg-m" } } }
    messages { revision: 0 message_0 { request { sg_member_list: "missing" } } }
    messages { revision: 0 message_0 { request { sg_member_add { sg_id: "sg-m" member: "10.0.0.256" } } } }
    messages { revision: 0 message_0 { request { sg_list: true } } }
    "#;
    let expected = format!(
        r#"{}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} sg_member_list: "2001:db8:0:85a3::ac1f:8001" sg_member_list: "10.0.0.1" }} }} }}
    {}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} sg_member_list: "10.0.0.1" }} }} }}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: false error {{ description: "Security Group not found" }} }} }} }} }}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: false error {{ description: "can't convert \"10.0.0.256\" to IP" }} }} }} }} }}
    messages {{ revision: 6 message_0 {{ response {{ status {{ status: true }} sg_list: "sg-m" }} }} }}
    "#,
        ok(3),
        ok(3)
    );
    scenario(input, &expected);
}

#[test]
fn app_status_and_quit() {
    let server = common::spawn_default();
    let c = common::client(server.endpoint());
    let r = common::send_text(&c, "messages { revision: 6 message_0 { request { app_status: true } } }");
    let st = r.messages[0].message_0.as_ref().unwrap().response.as_ref().unwrap().app_status.clone().unwrap();
    assert_eq!(st.request_counter, Some(1));
    assert!(st.start_date.unwrap() > 1_600_000_000);
    assert!(st.current_date.unwrap() >= st.start_date.unwrap());
    assert!(st.graph_dot.unwrap().starts_with("digraph"));
    let r = common::send_text(&c, "messages { revision: 6 message_0 { request { app_quit: true } } }");
    assert!(r.messages[0].message_0.as_ref().unwrap().response.as_ref().unwrap().status.status);
    let (handler, exit) = server.join().expect("server ended by itself");
    assert_eq!(exit, butterfly_api::ServeExit::Quit);
    assert!(handler.quit_requested);
}

#[test]
fn round_trip_is_fast() {
    // Requests are served as they arrive (no 100 ms polling sleep).
    let server = common::spawn_default();
    let c = common::client(server.endpoint());
    let req = butterfly_api::pb::message_v0::Request { nic_list: Some(true), ..Default::default() };
    c.call(req.clone()).unwrap();
    let n = 500;
    let t = std::time::Instant::now();
    for _ in 0..n {
        assert!(c.call(req.clone()).unwrap().status.status);
    }
    let per = t.elapsed() / n;
    println!("round trip (new REQ socket per request, tcp loopback): {per:?}");
    assert!(per < std::time::Duration::from_millis(20), "{per:?}");
}

/// butterfly-rs's VNI extension (fields 100+): settings stored and reported, every kind of
/// bad input refused with its reason and no change, and the precedence after Butterfly's
/// own fields (a request that also carries one of those is served as Butterfly would).
#[test]
fn vni_bum_settings_extension() {
    let input = r#"
    messages { revision: 6 message_0 { request { vni_set { vni: 42 mode: UNICAST flood: "10.0.0.2" flood: "10.0.0.3" } } } }
    messages { revision: 6 message_0 { request { vni_set { vni: 43 mode: MULTICAST group: "239.1.1.1" } } } }
    messages { revision: 6 message_0 { request { nic_add { id: "n" mac: "52:54:00:12:34:01" vni: 44 } } } }
    messages { revision: 6 message_0 { request { vni_details { } } } }
    messages { revision: 6 message_0 { request { vni_details { vni: 43 } } } }
    messages { revision: 6 message_0 { request { vni_set { vni: 42 mode: UNICAST flood: "239.0.0.1" } } } }
    messages { revision: 6 message_0 { request { vni_set { vni: 42 mode: UNICAST flood: "10.0.0.2" flood: "10.0.0.2" } } } }
    messages { revision: 6 message_0 { request { vni_set { vni: 16777216 mode: MULTICAST } } } }
    messages { revision: 6 message_0 { request { vni_set { vni: 42 mode: MULTICAST group: "10.0.0.9" } } } }
    messages { revision: 6 message_0 { request { vni_set { mode: MULTICAST } } } }
    messages { revision: 6 message_0 { request { vni_details { vni: 16777216 } } } }
    messages { revision: 6 message_0 { request { vni_details { vni: 42 } } } }
    messages { revision: 6 message_0 { request { vni_set { vni: 43 mode: DEFAULT } } } }
    messages { revision: 6 message_0 { request { vni_details { vni: 43 } } } }
    messages { revision: 6 message_0 { request { nic_list: true vni_set { vni: 45 mode: MULTICAST } } } }
    messages { revision: 6 message_0 { request { vni_details { vni: 45 } } } }
    "#;
    let expected = r#"
    messages { revision: 6 message_0 { response { status { status: true } } } }
    messages { revision: 6 message_0 { response { status { status: true } } } }
    messages { revision: 6 message_0 { response { status { status: true } nic_add { path: "/tmp/qemu-vhost-n" } } } }
    messages { revision: 6 message_0 { response { status { status: true }
        vni_details { vni: 42 mode: UNICAST own: true flood: "10.0.0.2" flood: "10.0.0.3" nics: 0 }
        vni_details { vni: 43 mode: MULTICAST own: true group: "239.1.1.1" nics: 0 }
        vni_details { vni: 44 mode: MULTICAST own: false nics: 1 } } } }
    messages { revision: 6 message_0 { response { status { status: true }
        vni_details { vni: 43 mode: MULTICAST own: true group: "239.1.1.1" nics: 0 } } } }
    messages { revision: 6 message_0 { response { status { status: false error { description:
        "Bad VNI format: VNI 42: flood VTEP 239.0.0.1 is a multicast address (a flood list holds unicast VTEP addresses)" } } } } }
    messages { revision: 6 message_0 { response { status { status: false error { description:
        "Bad VNI format: VNI 42: flood VTEP 10.0.0.2 is listed twice" } } } } }
    messages { revision: 6 message_0 { response { status { status: false error { description:
        "Bad VNI format: VNI 16777216 is out of range (0..=16777215)" } } } } }
    messages { revision: 6 message_0 { response { status { status: false error { description:
        "Bad VNI format: VNI 42: group 10.0.0.9 is not a multicast address" } } } } }
    messages { revision: 6 message_0 { response { status { status: false error { description:
        "Bad VNI format: vni is missing" } } } } }
    messages { revision: 6 message_0 { response { status { status: false error { description:
        "Bad VNI format: VNI 16777216 is out of range (0..=16777215)" } } } } }
    messages { revision: 6 message_0 { response { status { status: true }
        vni_details { vni: 42 mode: UNICAST own: true flood: "10.0.0.2" flood: "10.0.0.3" nics: 0 } } } }
    messages { revision: 6 message_0 { response { status { status: true } } } }
    messages { revision: 6 message_0 { response { status { status: true }
        vni_details { vni: 43 mode: MULTICAST own: false nics: 0 } } } }
    messages { revision: 6 message_0 { response { status { status: true } nic_list: "n" } } }
    messages { revision: 6 message_0 { response { status { status: true }
        vni_details { vni: 45 mode: MULTICAST own: false nics: 0 } } } }
    "#;
    scenario(input, expected);
}
