//! Runs the real `butterfly` binary against an in-process server.

// The API crate's test helpers (a daemon on a temporary endpoint), shared rather than copied.
#[path = "../../butterfly-api/tests/common/mod.rs"]
mod common;
use butterfly_api::crypto::Key;
use butterfly_api::{DispatchConfig, ServerConfig};
use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn bf(endpoint: &str, args: &str) -> Out {
    let mut argv: Vec<String> = args.split_whitespace().map(String::from).collect();
    argv.extend(["-e".to_string(), endpoint.to_string(), "-t".to_string(), "3000".to_string()]);
    bf_raw(&argv)
}

fn bf_raw(argv: &[String]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_butterfly")).args(argv).output().expect("runs");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn ok(endpoint: &str, args: &str) -> String {
    let o = bf(endpoint, args);
    assert_eq!(o.code, 0, "butterfly {args}: {}{}", o.stdout, o.stderr);
    o.stdout
}

#[test]
fn nic_commands() {
    let s = common::spawn_default();
    let e = s.endpoint().to_string();
    let out = ok(&e, "nic add --id nic-1 --mac 52:54:00:12:34:01 --vni 42 --ip 42.0.0.1 --ip 2001:0db8::0001 --enable-antispoof");
    assert_eq!(out, "/tmp/qemu-vhost-nic-1\n");
    assert_eq!(ok(&e, "nic add --id tap-2 --mac 52:54:00:12:34:02 --vni 42 --type TAP"), "tap-2\n");
    assert_eq!(ok(&e, "nic list"), "nic-1\ntap-2\n");
    let d = ok(&e, "nic details nic-1");
    assert!(
        d.starts_with(
            "id: nic-1\nmac: 52:54:00:12:34:01\nvni: 42\nip: 42.0.0.1\nip: 2001:db8::1\nantispoof: true\n"
        ),
        "{d}"
    );
    assert_eq!(ok(&e, "nic stats nic-1"), "in: 0\nout: 0\n");
    ok(&e, "nic update --id nic-1 --ip -e --enable-antispoof false");
    let d = ok(&e, "nic details nic-1");
    assert!(!d.contains("ip: ") && d.contains("antispoof: false"), "{d}");
    ok(&e, "nic sg add nic-1 sg-b sg-a");
    assert_eq!(ok(&e, "nic sg list nic-1"), "sg-a\nsg-b\n");
    ok(&e, "nic sg del nic-1 sg-a");
    assert_eq!(ok(&e, "nic sg list nic-1"), "sg-b\n");
    ok(&e, "nic sg set nic-1");
    assert_eq!(ok(&e, "nic sg list nic-1"), "");
    // Server-side errors: exit 1 with the description.
    let o = bf(&e, "nic add --id x --mac 52:54:00:12:34 --vni 1");
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("Bad NIC format"), "{}", o.stderr);
    let o = bf(&e, "nic stats nope");
    assert_eq!((o.code, o.stderr.contains("NIC: nope not found")), (1, true), "{}", o.stderr);
    // Usage errors: exit 1; help: exit 0.
    assert_eq!(bf(&e, "nic add --id x").code, 1);
    assert_eq!(bf(&e, "nic add --id x --mac 52:54:00:12:34:01 --vni 1 --type FOO").code, 1);
    assert_eq!(bf(&e, "nic add --help").code, 0);
    ok(&e, "nic del nic-1 tap-2 never");
    assert_eq!(ok(&e, "nic list"), "");
    let (h, _) = s.stop().unwrap();
    assert!(h.model.nic_ids().is_empty());
}

#[test]
fn sg_rules_members_chaining_json_dump() {
    let s = common::spawn_default();
    let e = s.endpoint().to_string();
    ok(&e, "sg add sg-1 sg-2 + sg member add sg-1 10.0.0.1 + sg member add sg-1 2001:db8::0:1");
    assert_eq!(ok(&e, "sg list"), "sg-1\nsg-2\n");
    assert_eq!(ok(&e, "sg member list sg-1"), "10.0.0.1\n2001:db8::1\n");
    ok(&e, "sg rule add sg-1 --ip-proto tcp --port-start 1000 --port-end 2000 --cidr 10.0.0.0/24");
    ok(&e, "sg rule add sg-1 --ip-proto 42 --sg-members sg-2");
    let list = ok(&e, "sg rule list sg-1");
    // Rule ids are Butterfly's (std::hash of the rule's C++ text format).
    assert!(list.contains("f44fac34f8667927 | direction: INBOUND - IP protocol: 6 - port start: 1000 - port end: 2000 - cidr: 10.0.0.0/24 - members of sg: Ø"), "{list}");
    assert!(list.contains("cfdb94f9418c88f1 | direction: INBOUND - IP protocol: 42 - port start: Ø - port end: Ø - cidr: Ø - members of sg: sg-2"), "{list}");
    ok(&e, "sg rule del sg-1 f44fac34f8667927");
    let o = bf(&e, "sg rule del sg-1 0000000000000000");
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("no rule found with hash"));
    ok(&e, "sg rule del sg-1 --ip-proto 42 --sg-members sg-2");
    assert_eq!(ok(&e, "sg rule list sg-1"), "");
    assert_eq!(bf(&e, "sg rule add sg-1 --ip-proto tcp --cidr 0.0.0.0/0").code, 1);
    assert_eq!(bf(&e, "sg rule add sg-1 --ip-proto all --cidr 0.0.0.0/0 --sg-members x").code, 1);
    // Chain stops at the first failure.
    let o = bf(&e, "sg add sg-3 + sg member add sg-3 not-an-ip + sg add sg-4");
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("error in command: sg member add sg-3 not-an-ip"), "{}", o.stderr);
    assert_eq!(ok(&e, "sg list"), "sg-1\nsg-2\nsg-3\n");
    // JSON output.
    let v: serde_json::Value = serde_json::from_str(&ok(&e, "sg list --json")).unwrap();
    assert_eq!(v["sg_list"], serde_json::json!(["sg-1", "sg-2", "sg-3"]));
    // Dump, then replay into a fresh server, then dump again: identical.
    ok(&e, "nic add --id n1 --mac 52:54:00:00:00:01 --vni 7 --ip 1.2.3.4 --sg sg-1 --packet-trace true --trace-path /tmp/t.pcap");
    ok(&e, "sg rule add sg-2 --ip-proto udp --port 53 --cidr ::/0 --dir out");
    let dump = ok(&e, "dump");
    assert!(dump.contains("nic_add") && dump.contains("sg_add"), "{dump}");
    let dir = std::env::temp_dir().join(format!("bf-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dump.txt");
    std::fs::write(&file, &dump).unwrap();
    let s2 = common::spawn_default();
    let e2 = s2.endpoint().to_string();
    ok(&e2, &format!("request {}", file.display()));
    assert_eq!(ok(&e2, "dump"), dump);
    let json = ok(&e2, "dump --json");
    std::fs::write(dir.join("dump.json"), &json).unwrap();
    let s3 = common::spawn_default();
    ok(s3.endpoint(), &format!("request {}", dir.join("dump.json").display()));
    assert_eq!(ok(s3.endpoint(), "dump"), dump);
    let (h1, _) = s.stop().unwrap();
    let (h3, _) = s3.stop().unwrap();
    assert_eq!(h1.model, h3.model);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn status_shutdown_request_stdout() {
    let s = common::spawn_default();
    let e = s.endpoint().to_string();
    let st = ok(&e, "status");
    assert!(
        st.starts_with("start date: ")
            && st.contains("request counter: 1\n")
            && st.contains("dot graph: \ndigraph"),
        "{st}"
    );
    let dir = std::env::temp_dir().join(format!("bf-req-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("req.txt");
    std::fs::write(
        &f,
        "messages { revision: 0 message_0 { message_id: \"x\" request { sg_list: true } } }\n",
    )
    .unwrap();
    let out = ok(&e, &format!("request {} --stdout", f.display()));
    let reply = butterfly_api::text::from_text(&out).unwrap();
    assert_eq!(reply.messages[0].message_0.as_ref().unwrap().message_id.as_deref(), Some("x"));
    std::fs::write(&f, "this is not a request").unwrap();
    assert_eq!(bf(&e, &format!("request {}", f.display())).code, 1);
    ok(&e, "shutdown");
    let (_, exit) = s.join().unwrap();
    assert_eq!(exit, butterfly_api::ServeExit::Quit);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreachable_daemon_reported_within_timeout() {
    // Bind then drop a server to get a port with nobody listening.
    let s = common::spawn_default();
    let e = s.endpoint().to_string();
    s.stop().unwrap();
    let t = std::time::Instant::now();
    let o = bf_raw(&["nic".into(), "list".into(), "-e".into(), e.clone(), "-t".into(), "300".into()]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no reply from"), "{}", o.stderr);
    assert!(t.elapsed() < std::time::Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn encryption_with_key_files() {
    let key = Key::generate().unwrap();
    let s = common::spawn(ServerConfig {
        endpoint: "tcp://127.0.0.1:0".into(),
        dispatch: DispatchConfig { key: Some(key.clone()), ..Default::default() },
        ..Default::default()
    });
    let e = s.endpoint().to_string();
    let dir = std::env::temp_dir().join(format!("bf-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.key");
    std::fs::write(&good, format!("{}\n", key.to_base64())).unwrap();
    let bad = dir.join("bad.key");
    std::fs::write(&bad, format!("{}\n", Key::generate().unwrap().to_base64())).unwrap();
    ok(&e, &format!("sg add sg-1 -k {}", good.display()));
    assert_eq!(ok(&e, &format!("sg list -k {}", good.display())), "sg-1\n");
    let o = bf(&e, "sg list");
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("REJECTED"), "{}", o.stderr);
    let o = bf(&e, &format!("sg list -k {}", bad.display()));
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("Encrypted message error: REJECTED"), "{}", o.stderr);
    let o = bf(&e, "sg list -k /nonexistent/key");
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("cannot load encryption key"), "{}", o.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `butterfly vni …` (butterfly-rs): set, flood add/del, del, details, status, dump and
/// replay; bad input exits 1 with the daemon's reason and changes nothing.
#[test]
fn vni_commands() {
    let s = common::spawn_default();
    let e = s.endpoint().to_string();
    ok(&e, "vni set 42 --flood 10.0.0.2,10.0.0.3");
    ok(&e, "vni set 43 --group 239.1.1.1 + vni set 44 --unicast + vni set 45 --multicast");
    assert_eq!(
        ok(&e, "vni details 42"),
        "vni: 42\nmode: unicast\nsetting: own\nflood: 10.0.0.2\nflood: 10.0.0.3\nnics: 0\n"
    );
    ok(&e, "vni flood add 42 10.0.0.4 10.0.0.2");
    ok(&e, "vni flood del 42 10.0.0.3");
    assert!(ok(&e, "vni details 42").contains("flood: 10.0.0.2\nflood: 10.0.0.4\nnics"));
    ok(&e, "vni flood add 44 fd00::9");
    assert!(ok(&e, "vni details 44").contains("flood: fd00::9\n"));
    // Bad input: exit 1, the reason, nothing changed.
    let before = ok(&e, "vni details");
    for (args, why) in [
        ("vni set 42 --flood 239.0.0.1", "flood VTEP 239.0.0.1 is a multicast address"),
        ("vni set 42 --flood 10.0.0.5,10.0.0.5", "flood VTEP 10.0.0.5 is listed twice"),
        ("vni set 16777216 --multicast", "a VNI is a number from 0 to 16777215 (2^24 - 1)"),
        ("vni set -1 --multicast", "a VNI is a number from 0 to 16777215 (2^24 - 1)"),
        ("vni details -5", "a VNI is a number from 0 to 16777215 (2^24 - 1)"),
        ("vni set 42 --group 10.0.0.1", "group 10.0.0.1 is not a multicast address"),
        ("vni flood add 42 10.0.0.x", "flood VTEP \"10.0.0.x\" is not an IP address"),
        ("vni flood add 43 10.0.0.5", "VNI 43 floods to its multicast group 239.1.1.1"),
        ("vni set 42", "vni set needs exactly one mode"),
        ("vni set 42 --group 239.0.0.1 --flood 10.0.0.2", "vni set needs exactly one mode"),
    ] {
        let o = bf(&e, args);
        assert_eq!(o.code, 1, "{args}: {}{}", o.stdout, o.stderr);
        assert!(o.stderr.contains(why), "{args}: {}", o.stderr);
    }
    assert_eq!(bf(&e, "vni set x --multicast").code, 1, "not a number");
    assert_eq!(ok(&e, "vni details"), before, "nothing changed");
    // status: one line per VNI before the graph; --json has them too.
    let st = ok(&e, "status");
    assert!(
        st.contains(
            "vni 42: unicast, flood list 10.0.0.2 10.0.0.4 (own setting), remote vteps: none, nics: 0\n"
        ),
        "{st}"
    );
    assert!(st.contains("vni 43: multicast, group 239.1.1.1 (own setting)"), "{st}");
    assert!(st.contains("vni 44: unicast, flood list fd00::9"), "{st}");
    assert!(st.find("vni 45").unwrap() < st.find("dot graph").unwrap(), "{st}");
    let json = ok(&e, "status --json");
    assert!(json.contains("\"vni_details\"") && json.contains("\"graph_dot\""), "{json}");
    // Dump and replay keep the settings.
    let dump = ok(&e, "dump");
    assert!(dump.contains("vni_set"), "{dump}");
    let dir = std::env::temp_dir().join(format!("bf-cli-vni-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dump.txt"), &dump).unwrap();
    let s2 = common::spawn_default();
    ok(s2.endpoint(), &format!("request {}", dir.join("dump.txt").display()));
    assert_eq!(ok(s2.endpoint(), "vni details"), ok(&e, "vni details"));
    // Back to the default.
    ok(&e, "vni del 42 43 + vni set 44 --default");
    assert!(ok(&e, "vni details 42").contains("mode: multicast\nsetting: default\n"));
    let (h, _) = s.stop().unwrap();
    assert_eq!(h.model.vni_settings().count(), 1, "only VNI 45 keeps a setting");
    s2.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A daemon that does not know the extension (Butterfly's): `status` still works, without
/// VNI lines.
#[test]
fn status_works_with_a_daemon_without_vni_support() {
    struct Old(butterfly_api::MemoryHandler);
    impl butterfly_api::Handler for Old {
        fn nic_add(
            &mut self,
            n: butterfly_api::NicSpec,
        ) -> butterfly_api::HandlerResult<butterfly_api::NicInfo> {
            self.0.nic_add(n)
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
    let s = butterfly_api::Server::spawn(
        ServerConfig { endpoint: "tcp://127.0.0.1:0".into(), ..Default::default() },
        Old(butterfly_api::MemoryHandler::new()),
    )
    .unwrap();
    let e = s.endpoint().to_string();
    ok(&e, "nic add --id n --mac 52:54:00:12:34:01 --vni 7");
    let st = ok(&e, "status");
    assert!(st.contains("request counter: ") && st.contains("dot graph: ") && !st.contains("vni 7"), "{st}");
    assert!(ok(&e, "dump").contains("nic_add"));
    let o = bf(&e, "vni details");
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("VNI details are not supported by this daemon"), "{}", o.stderr);
    s.stop().unwrap();
}

/// Messages that say what is wrong: a negative VNI, an endpoint without its scheme, a NIC
/// id that replaces a NIC, dates people read.
#[test]
fn clear_messages_for_common_mistakes() {
    let s = common::spawn_default();
    let e = s.endpoint().to_string();
    // A negative VNI is a bad value, not an unknown option.
    for args in [
        "nic add --id n1 --mac 52:54:00:00:00:01 --vni -1",
        "nic add --id n1 --mac 52:54:00:00:00:01 --vni 16777216",
    ] {
        let o = bf(&e, args);
        assert_eq!(o.code, 1, "{args}");
        assert!(o.stderr.contains("a VNI is a number from 0 to 16777215 (2^24 - 1)"), "{args}: {}", o.stderr);
        assert!(!o.stderr.contains("unexpected argument"), "{}", o.stderr);
    }
    // An endpoint without tcp://: what a valid one looks like, at once.
    let port = e.rsplit(':').next().unwrap();
    let o = bf_raw(&["-e".into(), format!("127.0.0.1:{port}"), "nic".into(), "list".into()]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains(&format!("\"127.0.0.1:{port}\" is not a ZeroMQ endpoint: use tcp://HOST:PORT")),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("Invalid argument"), "{}", o.stderr);
    // Adding a NIC id again replaces the NIC (Butterfly's semantics), and the CLI says so.
    let add = |vni: &str| bf(&e, &format!("nic add --id n1 --mac 52:54:00:00:00:01 --vni {vni}"));
    let first = add("1");
    assert_eq!((first.code, first.stdout.as_str()), (0, "/tmp/qemu-vhost-n1\n"));
    assert!(!first.stderr.contains("replaced"), "{}", first.stderr);
    let again = add("2");
    assert_eq!((again.code, again.stdout.as_str()), (0, "/tmp/qemu-vhost-n1\n"), "stdout is still the path");
    assert!(again.stderr.contains("NIC n1 existed and was replaced"), "{}", again.stderr);
    let json = ok(&e, "nic add --id n1 --mac 52:54:00:00:00:01 --vni 3 --json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("one JSON reply");
    assert_eq!(v["nic_add"]["path"], "/tmp/qemu-vhost-n1");
    // Dates as RFC 3339 (UTC), with the uptime; --json keeps the raw seconds.
    let st = ok(&e, "status");
    let line = |name: &str| st.lines().find(|l| l.starts_with(name)).unwrap().to_string();
    let (start, now) = (line("start date: "), line("current date: "));
    for l in [&start, &now] {
        let date = l.split(": ").nth(1).unwrap();
        let b = date.as_bytes();
        assert!(
            b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[19] == b'Z',
            "{l}"
        );
    }
    assert!(start.contains(" (up "), "{start}");
    let json = ok(&e, "status --json");
    let v: serde_json::Value = serde_json::Deserializer::from_str(&json).into_iter().next().unwrap().unwrap();
    let raw = &v["app_status"]["start_date"];
    assert!(raw.is_u64() || raw.as_str().is_some_and(|t| t.parse::<u64>().is_ok()), "{v}");
    s.stop().unwrap();
}

/// butterfly-rs's link-local extension: listed, canonicalised, shown with the MAC's EUI-64
/// address, replaced and cleared by nic update, refused outside fe80::/10, kept by dump.
#[test]
fn link_local_addresses() {
    let s = common::spawn_default();
    let e = s.endpoint().to_string();
    ok(&e, "nic add --id n1 --mac 52:54:00:12:34:01 --vni 4 --link-local FE80::0001 --link-local fe80::1");
    let d = ok(&e, "nic details n1");
    assert!(
        d.contains("link-local: fe80::5054:ff:fe12:3401 (from the mac)\nlink-local: fe80::1\ntype:"),
        "{d}"
    );
    ok(&e, "nic update --id n1 --link-local fe80::2 --link-local fe80::3");
    assert!(ok(&e, "nic details n1").contains("link-local: fe80::2\nlink-local: fe80::3\n"));
    let dump = ok(&e, "dump");
    assert!(dump.contains(r#"link_local: ["fe80::2", "fe80::3"]"#), "{dump}");
    ok(&e, "nic update --id n1 --link-local -e");
    let d = ok(&e, "nic details n1");
    assert_eq!(d.matches("link-local:").count(), 1, "only the MAC's is left: {d}");
    for (args, why) in [
        (
            "nic add --id n2 --mac 52:54:00:12:34:02 --vni 4 --link-local fd00::1",
            "Bad NIC format: link-local address fd00::1 is not in fe80::/10",
        ),
        (
            "nic update --id n1 --link-local 10.0.0.1",
            "Bad Nic update format: link-local address 10.0.0.1 is not in fe80::/10",
        ),
        ("nic update --id n1 --link-local fe80::zz", "can't convert \"fe80::zz\" to IP"),
    ] {
        let o = bf(&e, args);
        assert_eq!(o.code, 1, "{args}");
        assert!(o.stderr.contains(why), "{args}: {}", o.stderr);
    }
    assert_eq!(ok(&e, "nic list"), "n1\n", "nothing added");
    s.stop().unwrap();
}
