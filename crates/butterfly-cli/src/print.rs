//! Human output: one function per kind of object, byte for byte as Butterfly printed it.

use butterfly_api::pb::message_v0 as v0;
use butterfly_api::types::Rule;
use std::time::Duration;

/// Seconds since the epoch (the API's dates) as RFC 3339 UTC, e.g. 2026-12-04T18:00:00Z.
pub(crate) fn date(epoch: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(epoch);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn or_empty(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("Ø")
}

pub(crate) fn rule_line(r: &v0::Rule) -> String {
    let id = Rule::try_from(r).map(|x| x.cli_id()).unwrap_or_else(|_| "????????????????".into());
    let dir = if r.direction == 1 { "OUTBOUND" } else { "INBOUND" };
    let port = |p: Option<u32>| p.map(|p| p.to_string());
    let cidr = r.cidr.as_ref().map(|c| format!("{}/{}", c.address, c.mask_size));
    format!(
        "{id} | direction: {dir} - IP protocol: {} - port start: {} - port end: {} - cidr: {} - members of sg: {}",
        r.protocol,
        or_empty(&port(r.port_start)),
        or_empty(&port(r.port_end)),
        or_empty(&cidr),
        or_empty(&r.security_group)
    )
}

pub(crate) fn print_nic(n: &v0::Nic) {
    println!("id: {}", n.id);
    println!("mac: {}", n.mac);
    println!("vni: {}", n.vni);
    for ip in &n.ip {
        println!("ip: {ip}");
    }
    for sg in &n.security_group {
        println!("sg: {sg}");
    }
    println!("antispoof: {}", n.ip_anti_spoof.unwrap_or(false));
    if let Some(t) = &n.sniff_target_nic_id {
        println!("sniff target: {t}");
    }
    println!("bypass filtering: {}", n.bypass_filtering.unwrap_or(false));
    println!("packet trace: {}", n.packet_trace.unwrap_or(false));
    if let Some(p) = &n.packet_trace_path {
        println!("trace path: {p}");
    }
    // The link-local addresses anti-spoofing lets the NIC use: its MAC's EUI-64 one, then
    // those the daemon was given (butterfly-rs).
    if let Ok(mac) = n.mac.parse::<butterfly_api::types::MacAddr>() {
        println!("link-local: {} (from the mac)", mac.eui64_link_local());
    }
    for ll in &n.link_local {
        println!("link-local: {ll}");
    }
    let t = v0::nic::Type::try_from(n.r#type.unwrap_or(0)).map(|t| t.as_str_name()).unwrap_or("?");
    println!("type: {t}");
    if let Some(b) = &n.btype {
        println!("btype: {b}");
    }
    if let (Some(ip), Some(mac)) = (&n.dip, &n.dmac) {
        println!("dip: {ip}\ndmac: {mac}");
    }
    if n.vhost_user_client == Some(true) {
        println!("vhost-user: client");
    }
    if let Some(p) = &n.path {
        println!("path: {p}");
    }
}

pub(crate) fn mode_name(mode: Option<i32>) -> &'static str {
    v0::vni_bum::Mode::try_from(mode.unwrap_or(0)).map(|m| m.as_str_name()).unwrap_or("?")
}

pub(crate) fn print_vni(v: &v0::VniState) {
    println!("vni: {}", v.vni.unwrap_or(0));
    println!("mode: {}", mode_name(v.mode).to_ascii_lowercase());
    println!("setting: {}", if v.own.unwrap_or(false) { "own" } else { "default" });
    if let Some(g) = &v.group {
        println!("group: {g}");
    }
    for f in &v.flood {
        println!("flood: {f}");
    }
    for r in &v.remote_vtep {
        println!("remote vtep: {r}");
    }
    println!("nics: {}", v.nics.unwrap_or(0));
}

/// One line per VNI for `status`.
pub(crate) fn vni_line(v: &v0::VniState) -> String {
    let how = match (&v.group, v.flood.as_slice()) {
        (Some(g), _) => format!("group {g}"),
        (None, []) if v.mode == Some(v0::vni_bum::Mode::Unicast as i32) => "flood list empty".to_string(),
        (None, []) if v.mode == Some(v0::vni_bum::Mode::Evpn as i32) => "no type-3 route yet".to_string(),
        (None, f) if v.mode == Some(v0::vni_bum::Mode::Evpn as i32) => {
            format!("flood list {} (type-3 routes)", f.join(" "))
        }
        (None, []) => "default group".to_string(),
        (None, f) => format!("flood list {}", f.join(" ")),
    };
    let remotes = if v.remote_vtep.is_empty() { "none".to_string() } else { v.remote_vtep.join(" ") };
    format!(
        "vni {}: {}, {how} ({}), remote vteps: {remotes}, nics: {}",
        v.vni.unwrap_or(0),
        mode_name(v.mode).to_ascii_lowercase(),
        if v.own.unwrap_or(false) { "own setting" } else { "daemon default" },
        v.nics.unwrap_or(0)
    )
}

/// Nanoseconds as microseconds with one decimal, as Butterfly printed its ping times.
fn us(ns: u64) -> String {
    format!("{:.1} us", ns as f64 / 1000.0)
}

/// A BENCH NIC's figures (`nic stats`), under its byte counters.
pub(crate) fn print_bench(b: &v0::BenchStats) {
    println!("bench: {}", b.btype());
    println!("sent: {}\nreceived: {}", b.sent(), b.received());
    if b.btype() != "ICMP_SND_LIKE" {
        return;
    }
    println!("lost: {}", b.lost());
    if let (Some(min), Some(mean), Some(max)) = (b.rtt_min_ns, b.rtt_mean_ns, b.rtt_max_ns) {
        println!("rtt min/mean/max: {} / {} / {}", us(min), us(mean), us(max));
    }
    println!("windows: {} (of {} replies)", b.windows(), b.window_size());
    if let (Some(mean), Some(best), Some(worst)) = (b.window_mean_ns, b.window_best_ns, b.window_worst_ns) {
        println!("window means: mean {}, best {}, worst {}", us(mean), us(best), us(worst));
    }
    if let (Some(min), Some(mean), Some(max)) =
        (b.last_window_min_ns, b.last_window_mean_ns, b.last_window_max_ns)
    {
        println!("last window min/mean/max: {} / {} / {}", us(min), us(mean), us(max));
    }
    if !b.recent_window_mean_ns.is_empty() {
        let v: Vec<String> = b.recent_window_mean_ns.iter().map(|&n| us(n)).collect();
        println!("recent window means: {}", v.join(", "));
    }
    if b.no_buffer() > 0 {
        println!("not sent (no buffer): {}", b.no_buffer());
    }
}
