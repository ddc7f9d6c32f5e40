//! BENCH NICs (Butterfly's scenarios 61 and 62): an in-daemon ICMP echo sender and responder
//! standing where VMs would, measuring the daemon's own path (firewall, anti-spoofing,
//! switch, VTEP), driven and read through the real CLI.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SND_MAC: &str = "52:54:00:12:34:01";
const RCV_MAC: &str = "52:54:00:12:34:02";

/// `nic stats ID --json`'s bench figures.
fn bench(d: &Daemon, id: &str) -> serde_json::Value {
    let out = d.ok(&["--json", "nic", "stats", id]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["nic_stats"]["bench"].clone()
}

fn n(v: &serde_json::Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("no {field} in {v}"))
}

fn us(v: &serde_json::Value, field: &str) -> f64 {
    n(v, field) as f64 / 1000.0
}

/// Polls `nic stats` of `id` until `done` holds; panics with the last figures after `limit`.
fn wait_bench(
    d: &Daemon,
    id: &str,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let b = bench(d, id);
        if done(&b) {
            return b;
        }
        assert!(t.elapsed() < limit, "{id}: still {b} after {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A security group letting ICMP (IPv4 and ICMPv6) in, Butterfly's "ICMP rule".
fn icmp_group(d: &Daemon, sg: &str) {
    d.ok(&["sg", "add", sg]);
    d.ok(&["sg", "rule", "add", sg, "--dir", "in", "--ip-proto", "1", "--cidr", "0.0.0.0/0"]);
    d.ok(&["sg", "rule", "add", sg, "--dir", "in", "--ip-proto", "58", "--cidr", "::/0"]);
}

/// `nic add` of BENCH NIC `id` (MAC `mac`, VNI 42, IP `ip`, group `sg`, bench type `btype`)
/// with `more` options: what the CLI prints.
fn add_bench(d: &Daemon, id: &str, mac: &str, ip: &str, sg: &str, btype: &str, more: &[&str]) -> String {
    let mut args = vec![
        "nic", "add", "--id", id, "--mac", mac, "--vni", "42", "--ip", ip, "--sg", sg, "--type", "BENCH",
    ];
    args.extend(["--btype", btype]);
    args.extend_from_slice(more);
    d.ok(&args)
}

fn add_rcv(d: &Daemon, id: &str, ip: &str, sg: &str) {
    let out = add_bench(d, id, RCV_MAC, ip, sg, "ICMP_RCV_LIKE", &[]);
    assert_eq!(out.trim(), "(nil)", "a BENCH NIC has no path");
}

fn add_snd(d: &Daemon, id: &str, ip: &str, dip: &str, sg: &str) {
    add_bench(d, id, SND_MAC, ip, sg, "ICMP_SND_LIKE", &["--dip", dip, "--dmac", RCV_MAC]);
}

/// The figures Butterfly printed, and the invariants between them.
fn check_figures(what: &str, b: &serde_json::Value) {
    println!(
        "{what}: sent {} received {} lost {} | rtt min/mean/max {:.1}/{:.1}/{:.1} us | {} windows of {}: \
         mean of means {:.1} us, best {:.1} us, worst {:.1} us | recent means {:?} ns",
        n(b, "sent"),
        n(b, "received"),
        n(b, "lost"),
        us(b, "rtt_min_ns"),
        us(b, "rtt_mean_ns"),
        us(b, "rtt_max_ns"),
        n(b, "windows"),
        n(b, "window_size"),
        us(b, "window_mean_ns"),
        us(b, "window_best_ns"),
        us(b, "window_worst_ns"),
        b["recent_window_mean_ns"]
    );
    assert_eq!(b["btype"], "ICMP_SND_LIKE");
    assert_eq!(n(b, "window_size"), 1024);
    assert!(n(b, "received") >= n(b, "windows") * 1024, "{b}");
    // One in flight at a time: everything sent was answered or lost, but the last one.
    assert!(n(b, "sent") <= n(b, "received") + n(b, "lost") + 1, "{b}");
    assert!(n(b, "lost") <= 5.max(n(b, "sent") / 50), "{what}: more than 2% lost: {b}");
    assert!(n(b, "rtt_min_ns") <= n(b, "rtt_mean_ns") && n(b, "rtt_mean_ns") <= n(b, "rtt_max_ns"), "{b}");
    let (best, mean, worst) = (n(b, "window_best_ns"), n(b, "window_mean_ns"), n(b, "window_worst_ns"));
    assert!(
        n(b, "rtt_min_ns") <= best && best <= mean && mean <= worst && worst <= n(b, "rtt_max_ns"),
        "{b}"
    );
    let recent = b["recent_window_mean_ns"].as_array().unwrap();
    assert_eq!(recent.len() as u64, n(b, "windows").min(16), "{b}");
    assert!(recent.iter().all(|m| (best..=worst).contains(&m.as_u64().unwrap())), "{b}");
}

/// 61: BENCH rcv (42.0.0.2) and snd (42.0.0.1) on one daemon, in a group with an ICMP
/// rule. Butterfly asserts a mean of window means ≤ 13 µs and a worst window mean ≤ 15 µs
/// (DPDK, release build, bare metal). Here (debug build, shared 2-core machine) the round
/// trip never leaves the data-plane thread (request and reply cross the graph within one
/// poll round): ≤ 1 ms and ≤ 5 ms hold unless replies waited for a poll, which is the
/// failure worth catching; the figures are printed.
#[test]
fn s61_bench_nic_one_daemon() {
    let t = Instant::now();
    let metrics = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(&["--no-state", "--metrics", &metrics]);
    icmp_group(&d, "sg-1");
    add_rcv(&d, "rcv", "42.0.0.2", "sg-1");
    add_snd(&d, "snd", "42.0.0.1", "42.0.0.2", "sg-1");
    let b = wait_bench(&d, "snd", Duration::from_secs(30), |b| n(b, "windows") >= 2);
    check_figures("61 (one daemon)", &b);
    assert!(us(&b, "window_mean_ns") <= 1000.0, "mean of window means above 1 ms: {b}");
    assert!(us(&b, "window_worst_ns") <= 5000.0, "worst window mean above 5 ms: {b}");
    let r = bench(&d, "rcv");
    assert_eq!(r["btype"], "ICMP_RCV_LIKE");
    assert!(n(&r, "received") >= n(&b, "received") && n(&r, "sent") == n(&r, "received"), "{r}");
    assert!(r.get("rtt_mean_ns").is_none(), "a responder measures nothing: {r}");

    // The same figures in human form, in details, in status and in the metrics.
    let human = d.ok(&["nic", "stats", "snd"]);
    for line in ["bench: ICMP_SND_LIKE", "rtt min/mean/max: ", "window means: mean ", "recent window means: "]
    {
        assert!(human.contains(line), "{line:?} not in {human}");
    }
    let details = d.ok(&["nic", "details", "snd"]);
    for line in
        ["type: BENCH", "btype: ICMP_SND_LIKE", "dip: 42.0.0.2", "dmac: 52:54:00:12:34:02", "path: (nil)"]
    {
        assert!(details.contains(line), "{line:?} not in {details}");
    }
    let status = d.ok(&["status"]);
    assert!(status.contains("(ping-sender)") && status.contains("ping 42.0.0.1 -\\> 42.0.0.2"), "{status}");
    assert!(status.contains("(ping-responder)|") && status.contains("|answered "), "{status}");
    let body = get_metrics(&metrics);
    for series in [
        "butterfly_bench_sent_total{brick=\"vm-snd\",btype=\"ICMP_SND_LIKE\"",
        "butterfly_bench_received_total{brick=\"vm-rcv\",btype=\"ICMP_RCV_LIKE\"",
        "butterfly_bench_rtt_seconds{brick=\"vm-snd\",btype=\"ICMP_SND_LIKE\",stat=\"window_worst\"",
    ] {
        assert!(body.contains(series), "{series} not in {body}");
    }
    println!("61 took {:?}", t.elapsed());
}

fn get_metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    body
}

/// 62: rcv on the second daemon, snd on the first, across the test underlay (two host
/// namespaces joined by a veth, AF_PACKET underlays, IPv6 VTEPs like Butterfly's `-i ::101`).
/// Butterfly's thresholds for this case (42 ms mean of means, 55 ms worst window mean) hold.
#[test]
fn s62_bench_nic_two_daemons() {
    let t = Instant::now();
    let topo = two_hosts(true);
    for d in &topo.h {
        icmp_group(d, "sg-1");
    }
    add_rcv(&topo.h[1], "rcv", "42.0.0.2", "sg-1");
    add_snd(&topo.h[0], "snd", "42.0.0.1", "42.0.0.2", "sg-1");
    let b = wait_bench(&topo.h[0], "snd", Duration::from_secs(40), |b| n(b, "windows") >= 1);
    check_figures("62 (two daemons)", &b);
    assert!(us(&b, "window_mean_ns") <= 42_000.0, "Butterfly's 42 ms: {b}");
    assert!(us(&b, "window_worst_ns") <= 55_000.0, "Butterfly's 55 ms: {b}");
    let r = bench(&topo.h[1], "rcv");
    assert!(n(&r, "received") >= n(&b, "received"), "the other daemon's responder answered them: {r}");
    // They crossed the VXLAN underlay: the first daemon's VTEP encapsulated them.
    let status = topo.h[0].ok(&["status"]);
    assert!(status.contains("remote vteps: fd77::2"), "{status}");
    println!("62 took {:?}", t.elapsed());
}

/// A BENCH NIC goes through its firewall like a VM: with a group that lets no ICMP in, the
/// responder's firewall drops the requests and the sender counts them lost; an ICMP rule
/// added live lets the replies come.
#[test]
fn the_firewall_applies_to_bench_nics() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(&["--no-state", "--metrics", &metrics]);
    d.ok(&["sg", "add", "ssh"]);
    d.ok(&[
        "sg",
        "rule",
        "add",
        "ssh",
        "--dir",
        "in",
        "--ip-proto",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "0.0.0.0/0",
    ]);
    add_rcv(&d, "rcv", "42.0.0.2", "ssh");
    add_snd(&d, "snd", "42.0.0.1", "42.0.0.2", "ssh");
    let b = wait_bench(&d, "snd", Duration::from_secs(10), |b| n(b, "lost") >= 3);
    assert_eq!(n(&b, "received"), 0, "{b}");
    assert!(b.get("rtt_mean_ns").is_none(), "{b}");
    assert_eq!(n(&bench(&d, "rcv"), "received"), 0, "the requests never reached the responder");
    let body = get_metrics(&metrics);
    let fw_drops: u64 = body
        .lines()
        .filter(|l| l.starts_with("butterfly_brick_drops_total{brick=\"fw-rcv\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(fw_drops >= 3, "fw-rcv dropped the requests: {body}");

    d.ok(&["sg", "rule", "add", "ssh", "--dir", "in", "--ip-proto", "1", "--cidr", "0.0.0.0/0"]);
    let b = wait_bench(&d, "snd", Duration::from_secs(10), |b| n(b, "received") >= 10);
    assert!(n(&b, "rtt_mean_ns") > 0, "{b}");
}

/// Bad BENCH requests are refused with the reason and change nothing; IPv6 works too.
#[test]
fn bench_nics_refuse_bad_parameters_and_speak_ipv6() {
    let d = Daemon::start(&["--no-state"]);
    let refused = |args: &[&str], why: &str| {
        let out = d.cli(args);
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success() && text.contains(why), "{args:?}: {text}");
    };
    let base = ["nic", "add", "--id", "b", "--mac", SND_MAC, "--vni", "7", "--type", "BENCH"];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    refused(&with(&["--btype", "ICMP_RCV_LIKE"]), "a BENCH NIC needs an IP");
    refused(&with(&["--ip", "42.0.0.1"]), "btype must be ICMP_SND_LIKE or ICMP_RCV_LIKE");
    refused(
        &with(&["--ip", "42.0.0.1", "--btype", "ICMP_SND_LIKE", "--dip", "42.0.0.2"]),
        "needs dip and dmac",
    );
    refused(
        &with(&["--ip", "42.0.0.1", "--btype", "ICMP_SND_LIKE", "--dip", "42.0.0.2", "--dmac", "52:54"]),
        "invalid MAC address",
    );
    refused(
        &with(&["--ip", "fd00::1", "--btype", "ICMP_SND_LIKE", "--dip", "42.0.0.2", "--dmac", RCV_MAC]),
        "needs an IPv4 address on the NIC",
    );
    assert_eq!(d.ok(&["nic", "list"]).trim(), "", "nothing was created");

    icmp_group(&d, "sg-6");
    add_rcv(&d, "rcv6", "fd00::2", "sg-6");
    add_snd(&d, "snd6", "fd00::1", "fd00::2", "sg-6");
    let b = wait_bench(&d, "snd6", Duration::from_secs(10), |b| n(b, "received") >= 20);
    assert!(n(&b, "rtt_mean_ns") > 0, "{b}");
    // An update that would leave the responder without an address is refused, rolled back.
    refused(&["nic", "update", "--id", "rcv6", "--ip", "-e"], "a BENCH NIC needs an IP");
    assert!(d.ok(&["nic", "details", "rcv6"]).contains("ip: fd00::2"));
    let before = n(&bench(&d, "snd6"), "received");
    wait_bench(&d, "snd6", Duration::from_secs(10), |b| n(b, "received") > before + 10);
    // A new address rebuilds the responder on it: the sender's requests go unanswered.
    d.ok(&["nic", "update", "--id", "rcv6", "--ip", "fd00::3"]);
    let lost = n(&bench(&d, "snd6"), "lost");
    wait_bench(&d, "snd6", Duration::from_secs(10), |b| n(b, "lost") >= lost + 2);
}

/// BENCH NICs are kept in the state like any NIC: after a restart they are back, measuring
/// again from zero.
#[test]
fn bench_nics_come_back_after_a_restart() {
    let d = Daemon::start(&[]);
    icmp_group(&d, "sg-1");
    add_rcv(&d, "rcv", "42.0.0.2", "sg-1");
    add_snd(&d, "snd", "42.0.0.1", "42.0.0.2", "sg-1");
    wait_bench(&d, "snd", Duration::from_secs(10), |b| n(b, "received") >= 10);
    let (code, err, dir) = d.stop();
    assert_eq!(code, 0, "{err}");
    let d = Daemon::start_in(dir, &[]);
    assert_eq!(d.ok(&["nic", "list"]).split_whitespace().collect::<Vec<_>>(), ["rcv", "snd"]);
    assert!(d.ok(&["nic", "details", "snd"]).contains("btype: ICMP_SND_LIKE"));
    wait_bench(&d, "snd", Duration::from_secs(10), |b| n(b, "received") >= 10);
}
