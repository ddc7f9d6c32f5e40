//! Butterfly's test helpers (outscale/butterfly `tests/functions.sh`) over the harness, shared
//! by the ported acceptance scenarios (`scenarios.rs`, `scenarios_more.rs`): `nic_add BT i
//! VNI [SG...]` adds NIC i with MAC 52:54:00:12:34:0i, IP 42.0.0.i and anti-spoofing, then
//! one `nic sg add` per group.

use std::path::PathBuf;
use std::time::Duration;

use super::{exists, Daemon, Topology};

/// How long a check that must pass may take (the first packet of a pair waits for ARP/NDP).
pub const OK_WITHIN: Duration = Duration::from_secs(5);

/// A "VM": a TAP NIC of daemon `host`, in its own namespace `ns`, reached at `ip`.
#[derive(Clone, Debug)]
pub struct Vm {
    pub ns: String,
    pub nic: String,
    pub host: usize,
    pub ip: String,
}

/// What kind of NIC Butterfly's helper adds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `nic_add`: IP 42.0.0.i, anti-spoofing on.
    V4,
    /// `nic_add6`: IP 2001:db8:2000:aff0::i only, anti-spoofing on.
    V6,
    /// `nic_add_noip`: no IP (the guest and `nic update` add them later), anti-spoofing on.
    NoIp,
    /// `nic_add_bypass`: IP 42.0.0.i, `--bypass-filtering` (no firewall, no anti-spoofing).
    Bypass,
}

/// The MAC of NIC i: 52:54:00:12:34:0i.
pub fn mac(i: u8) -> String {
    format!("52:54:00:12:34:{i:02x}")
}

pub fn v4(i: u8) -> String {
    format!("42.0.0.{i}")
}

pub fn v6(i: u8) -> String {
    format!("2001:db8:2000:aff0::{i}")
}

/// Butterfly's `nic_add BT i VNI [SG...]` (and its variants, see [`Kind`]) with extra API
/// options `api`; the NIC's TAP is moved into a namespace of its own holding the NIC's IP.
pub fn nic_add(t: &mut Topology, bt: usize, i: u8, vni: u32, kind: Kind, sgs: &[&str], api: &[&str]) -> Vm {
    let ip = match kind {
        Kind::V4 | Kind::Bypass => Some(v4(i)),
        Kind::V6 => Some(v6(i)),
        Kind::NoIp => None,
    };
    let mut args: Vec<&str> =
        vec![if kind == Kind::Bypass { "--bypass-filtering" } else { "--enable-antispoof" }];
    args.extend_from_slice(api);
    let ns = t.vm_with(bt, &format!("n{i}"), vni, ip.as_deref(), &mac(i), &args);
    let nic = format!("n{i}{}", t.tag % 10_000);
    for sg in sgs {
        t.h[bt].ok(&["nic", "sg", "add", &nic, sg]);
    }
    Vm { ns, nic, host: bt, ip: ip.unwrap_or_default() }
}

/// Butterfly's `nic_add` of a vhost-user NIC `nic-i` (MAC 52:54:00:12:34:0i, VNI 42, IP
/// 42.0.0.i) on daemon `d`, with `filtering` (`--enable-antispoof` or `--bypass-filtering`):
/// the socket `nic add` prints, which must exist.
pub fn vhost_nic_add(d: &Daemon, i: u8, filtering: &str) -> PathBuf {
    let (id, mac, ip) = (format!("nic-{i}"), mac(i), v4(i));
    let out = d.ok(&["nic", "add", "--id", &id, "--mac", &mac, "--vni", "42", "--ip", &ip, filtering]);
    let sock = PathBuf::from(out.trim());
    assert!(exists(&sock), "nic add made {}", sock.display());
    sock
}

/// `sg rule OP SG --dir in --ip-proto PROTO` for port `port` alone, from `from` (`--cidr C`
/// or `--sg-members SG`).
pub fn port_rule(d: &Daemon, op: &str, sg: &str, proto: &str, port: u16, from: [&str; 2]) {
    let p = port.to_string();
    let mut args = vec!["sg", "rule", op, sg, "--dir", "in", "--ip-proto", proto];
    args.extend(["--port-start", &p, "--port-end", &p]);
    args.extend(from);
    d.ok(&args);
}

/// `sg_rule_add_port_open PROTO BT PORT SG`: PROTO to PORT from 0.0.0.0/0.
pub fn port_open(d: &Daemon, proto: &str, port: u16, sg: &str) {
    port_rule(d, "add", sg, proto, port, ["--cidr", "0.0.0.0/0"]);
}
