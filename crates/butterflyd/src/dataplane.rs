//! The data plane: one graph, on its own thread, changed through its command channel.
//!
//! ```text
//! underlay NIC ── vtep ──(one port per VNI)── switch-<vni> ── fw-<nic> ── antispoof-<nic> ── [sniff-<nic>] ── vm-<nic>
//! ```
//!
//! Every change (a NIC added, removed or updated) is one closure run by the graph's thread
//! between two poll rounds: other NICs' traffic never stops, and a failed change is rolled
//! back before the closure returns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use brick_core::bricks::{Flipped, Sniffer, SnifferDirection};
use brick_core::{
    Brick, BrickId, BrickStats, Graph, GraphHandle, PacketPool, PoolConfig, Runner, RunnerConfig, Side,
};
use brick_firewall::{AntiSpoof, AntiSpoofOptions, CompiledRuleset, Firewall, FirewallConfig};
use brick_nic::{AfPacketConfig, AfPacketNic, TapConfig, TapNic, TapOffloads};
use brick_switch::{Switch, SwitchConfig};
use brick_vhost::{Offloads, VhostUserConfig, VhostUserNic};
use brick_vtep::{Vtep, VtepConfig};
use butterfly_api::{NicInfo, NicType};

use crate::config::{Config, Underlay};

/// A data-plane failure, with a message for the operator or the API client.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The underlay could not be set up.
    #[error("underlay {what}: {why}")]
    Underlay {
        /// Which device.
        what: String,
        /// Why.
        why: String,
    },
    /// A NIC could not be created or changed.
    #[error("NIC {id}: {why}")]
    Nic {
        /// NIC id.
        id: String,
        /// Why.
        why: String,
    },
    /// The graph thread is gone.
    #[error("data plane: {0}")]
    Graph(#[from] brick_core::GraphError),
    /// Any other set-up failure.
    #[error("{0}")]
    Other(String),
}

fn nic_err(id: &str, why: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Nic { id: id.to_string(), why: why.to_string() }
}

/// What the daemon keeps about the bricks of one NIC.
#[derive(Debug, Clone)]
struct NicBricks {
    vni: u32,
    structure: Structure,
    firewall: Option<BrickId>,
    antispoof: Option<BrickId>,
    sniffer: Option<BrickId>,
    sniffer_path: Option<String>,
    endpoint: BrickId,
    endpoint_stats: Arc<BrickStats>,
}

/// The parts of a NIC that need its bricks rebuilt when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Structure {
    mac: [u8; 6],
    vni: u32,
    nic_type: NicType,
    bypass: bool,
}

impl Structure {
    fn of(info: &NicInfo) -> Structure {
        Structure {
            mac: info.spec.mac.octets(),
            vni: info.spec.vni,
            nic_type: info.spec.nic_type,
            bypass: info.spec.bypass_filtering,
        }
    }
}

struct VniState {
    switch: BrickId,
    nics: usize,
}

/// Ids of a NIC's bricks once added: switch, [firewall, anti-spoof, sniffer], endpoint and
/// the endpoint's counters.
type AddedNic = (BrickId, [Option<BrickId>; 3], BrickId, Arc<BrickStats>);

/// The running data plane.
pub struct Dataplane {
    runner: Option<Runner>,
    handle: GraphHandle,
    pool: PacketPool,
    /// Big buffers (64 KiB TCP super-frames) for what receives from TAPs with TSO: VM TAPs
    /// and a TAP underlay. `None` with `--no-offload`.
    big_pool: Option<PacketPool>,
    vtep: BrickId,
    offload: bool,
    vnis: HashMap<u32, VniState>,
    nics: HashMap<String, NicBricks>,
}

/// Counters of one NIC, as the API reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicCounters {
    /// Bytes received from the VM.
    pub from_vm_bytes: u64,
    /// Bytes delivered to the VM.
    pub to_vm_bytes: u64,
}

/// Buffers in the big pool: bursts of 64 from a few TAPs at a time, with room to spare.
const BIG_POOL_COUNT: usize = 512;
/// Data room of a big buffer: a 64 KiB IP packet, its Ethernet header and VLAN tags.
const BIG_DATA_ROOM: usize = 65_536 + 512;

/// Opens (creates, or attaches to) the underlay TAP. With the big pool (offloads on) and an
/// IPv4 underlay it asks for UDP-tunnel GSO, so VXLAN super-frames cross whole both ways
/// (Linux ≥ 6.17); on older kernels it falls back to plain frames. Returns the brick and
/// whether tunnel super-frames are on.
fn open_underlay_tap(
    name: &str,
    ipv4: bool,
    pool: &PacketPool,
    big: Option<&PacketPool>,
) -> Result<(TapNic, bool), DataplaneError> {
    let open = |cfg: TapConfig, pool: &PacketPool| {
        TapNic::create(name, cfg.clone(), pool.clone()).or_else(|_| TapNic::attach(name, cfg, pool.clone()))
    };
    if let (Some(big), true) = (big, ipv4) {
        let cfg = TapConfig { offloads: TapOffloads::TUNNEL, ..TapConfig::default() };
        if let Ok(tap) = open(cfg, big) {
            return Ok((tap, true));
        }
    }
    let tap = open(TapConfig::default(), pool).map_err(|e| DataplaneError::Underlay {
        what: format!("tap {name}"),
        why: format!("{e} (creating a TAP needs root or CAP_NET_ADMIN; or use --underlay none)"),
    })?;
    Ok((tap, false))
}

fn derived_mac(ip: IpAddr) -> [u8; 6] {
    // Locally administered, unicast, stable for a given VTEP address.
    let b = match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    [0x02, 0xbf, b[0], b[1], b[2], b[3]]
}

fn interface_mac(name: &str) -> Result<[u8; 6], String> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
        .map_err(|e| format!("cannot read the MAC of {name}: {e}"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(format!("unexpected MAC {text:?} for {name}"));
    }
    for (o, p) in mac.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).map_err(|_| format!("unexpected MAC {text:?} for {name}"))?;
    }
    Ok(mac)
}

/// Brings an interface up (the kernel side of a TAP we created).
pub fn link_up(name: &str) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["link", "set", "dev", name, "up"])
        .output()
        .map_err(|e| format!("cannot run `ip`: {e} (install iproute2)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip link set dev {name} up: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The underlay NIC brick (none with `--underlay none`) and the MAC the VTEP uses on it.
type Underside = (Option<Box<dyn Brick>>, [u8; 6]);

#[cfg(feature = "dpdk")]
fn dpdk_underlay(port: u16, args: &str, pool: PacketPool) -> Result<Underside, DataplaneError> {
    use brick_nic::{DpdkConfig, DpdkNic, Eal, PortSpec};
    let what = format!("dpdk port {port}");
    let underlay = |why: String| DataplaneError::Underlay { what: what.clone(), why };
    let args: Vec<&str> = args.split_whitespace().collect();
    let eal = Eal::init(&args).map_err(|e| underlay(format!("EAL ({}): {e}", args.join(" "))))?;
    let nic = DpdkNic::open(eal, DpdkConfig { port: PortSpec::Id(port), ..DpdkConfig::default() }, pool)
        .map_err(|e| underlay(e.to_string()))?;
    let mac = nic.mac().map_err(|e| underlay(e.to_string()))?;
    Ok((Some(Box::new(nic)), mac))
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_underlay(port: u16, _args: &str, _pool: PacketPool) -> Result<Underside, DataplaneError> {
    // Config::from_cli already refuses this; kept as a clear error for library callers.
    Err(DataplaneError::Underlay {
        what: format!("dpdk port {port}"),
        why: "this butterflyd was built without the `dpdk` feature".into(),
    })
}

impl Dataplane {
    /// Builds the underlay side (NIC + VTEP) and starts the graph thread.
    pub fn start(cfg: &Config) -> Result<Dataplane, DataplaneError> {
        let pool = PacketPool::new(PoolConfig { count: 16384, ..PoolConfig::default() })
            .map_err(|e| DataplaneError::Other(e.to_string()))?;
        let big_pool = if cfg.offload {
            Some(
                PacketPool::new(PoolConfig {
                    count: BIG_POOL_COUNT,
                    data_room: BIG_DATA_ROOM,
                    ..PoolConfig::default()
                })
                .map_err(|e| DataplaneError::Other(e.to_string()))?,
            )
        } else {
            None
        };
        let mut graph = Graph::new("butterflyd");
        // Whether the underlay takes VXLAN super-frames whole (TAP with UDP-tunnel GSO).
        let mut tunnel_gso = false;
        let (phys, local_mac): Underside = match &cfg.underlay {
            Underlay::Tap(name) => {
                let (tap, tunnel) = open_underlay_tap(name, cfg.ip.is_ipv4(), &pool, big_pool.as_ref())?;
                tunnel_gso = tunnel;
                link_up(name).map_err(|why| DataplaneError::Underlay { what: format!("tap {name}"), why })?;
                (Some(Box::new(tap)), derived_mac(cfg.ip))
            }
            Underlay::AfPacket(iface) => {
                let mac = interface_mac(iface)
                    .map_err(|why| DataplaneError::Underlay { what: format!("af-packet {iface}"), why })?;
                // Low-latency receive ring: TPACKET_V3 blocks would add up to 1 ms per hop.
                let afp = AfPacketConfig { low_latency: true, ..AfPacketConfig::default() };
                let nic = AfPacketNic::open(iface, afp, pool.clone()).map_err(|e| {
                    DataplaneError::Underlay { what: format!("af-packet {iface}"), why: e.to_string() }
                })?;
                (Some(Box::new(nic)), mac)
            }
            Underlay::Dpdk(port) => {
                let (nic, mac) = dpdk_underlay(*port, &cfg.dpdk_args, pool.clone())?;
                // Virtual devices (net_ring, net_null) have an all-zero MAC.
                (nic, if mac == [0; 6] { derived_mac(cfg.ip) } else { mac })
            }
            Underlay::None => (None, derived_mac(cfg.ip)),
        };
        let mut vcfg = VtepConfig::new(cfg.ip, local_mac);
        if let Some(mtu) = cfg.nic_mtu {
            vcfg.mtu = mtu;
        }
        vcfg.gateway = cfg.gateway;
        vcfg.prefix_len = cfg.underlay_prefix;
        vcfg.tunnel_gso = tunnel_gso;
        let vtep = Vtep::new(vcfg, pool.clone()).map_err(|e| DataplaneError::Other(format!("vtep: {e}")))?;
        let vtep = graph.add("vtep", vtep)?;
        if let Some(phys) = phys {
            let nic = graph.add_boxed("underlay", phys)?;
            graph.link(nic, vtep)?;
        }
        let runner = Runner::spawn(
            graph,
            RunnerConfig {
                name: "dataplane".into(),
                cpu: cfg.graph_cpu_core,
                idle_rounds: if cfg.busy_poll { u32::MAX } else { RunnerConfig::default().idle_rounds },
                // Default: sleep on the sources' wake fds as soon as a round is empty (every
                // source here has one); any spin was slower on a shared 2-vCPU machine.
                spin: if cfg.busy_poll { std::time::Duration::MAX } else { RunnerConfig::default().spin },
                ..RunnerConfig::default()
            },
        )
        .map_err(|e| DataplaneError::Other(format!("cannot start the data-plane thread: {e}")))?;
        Ok(Dataplane {
            handle: runner.handle(),
            runner: Some(runner),
            pool,
            big_pool,
            vtep,
            offload: cfg.offload,
            vnis: HashMap::new(),
            nics: HashMap::new(),
        })
    }

    /// A handle on the graph (metrics, DOT).
    pub fn handle(&self) -> GraphHandle {
        self.handle.clone()
    }

    /// The graph in DOT.
    pub fn dot(&self) -> Result<String, DataplaneError> {
        Ok(self.handle.exec(|g| g.to_dot())?)
    }

    /// Byte counters of a NIC's endpoint.
    pub fn counters(&self, id: &str) -> Option<NicCounters> {
        let n = self.nics.get(id)?;
        let west = n.endpoint_stats.side(Side::West);
        Some(NicCounters { from_vm_bytes: west.bytes_out.get(), to_vm_bytes: west.bytes_in.get() })
    }

    /// The firewall's connection table of NIC `id`, as bytes (for live migration); `None`
    /// when the NIC has no firewall (bypass_filtering) or does not exist.
    pub fn export_connections(&self, id: &str) -> Result<Option<Vec<u8>>, DataplaneError> {
        let Some(fw) = self.nics.get(id).and_then(|n| n.firewall) else { return Ok(None) };
        Ok(self.handle.exec(move |g| {
            g.brick::<Firewall>(fw).ok().map(|f| f.export_connections(brick_core::Timestamp::now()))
        })?)
    }

    /// Brings the NIC `id` to `desired` (None: removes it). `rules` is its compiled
    /// ruleset (ignored with bypass_filtering). `recreate` forces new bricks (nic_add's
    /// replace semantics).
    pub fn apply(
        &mut self,
        id: &str,
        desired: Option<&NicInfo>,
        rules: Option<CompiledRuleset>,
        recreate: bool,
    ) -> Result<(), DataplaneError> {
        let Some(info) = desired else {
            return self.remove_nic(id);
        };
        match self.nics.get(id) {
            Some(cur) if !recreate && cur.structure == Structure::of(info) => {
                self.update_nic(id, info, rules)
            }
            Some(_) => {
                self.remove_nic(id)?;
                self.add_nic(info, rules)
            }
            None => self.add_nic(info, rules),
        }
    }

    fn endpoint(&self, info: &NicInfo) -> Result<Box<dyn Brick>, DataplaneError> {
        let id = &info.spec.id;
        let mac = info.spec.mac.octets();
        match info.spec.nic_type {
            NicType::VhostUserServer => {
                let path = PathBuf::from(&info.path);
                // A stale socket from a previous run would make bind fail.
                if path.exists() {
                    let _ = std::fs::remove_file(&path);
                }
                let mut vcfg = VhostUserConfig::new(format!("vm-{id}"), mac, self.pool.clone());
                vcfg.offloads = Offloads { csum: self.offload, ..Offloads::default() };
                vcfg.offloads.tso = false;
                let nic = VhostUserNic::server(&path, vcfg).map_err(|e| nic_err(id, e))?;
                Ok(Box::new(nic))
            }
            NicType::Tap => {
                // With offloads, the VM's kernel hands over TCP super-frames (TSO) with GSO
                // metadata; they cross the graph whole and are segmented at the very end
                // (by the kernel behind a TAP underlay, or by the VTEP in software).
                let (cfg, pool) = match &self.big_pool {
                    // Segments that arrive one by one (AF_PACKET/DPDK underlays) are merged
                    // back into super-frames for the VM (software GRO).
                    Some(big) => (
                        TapConfig { offloads: TapOffloads::ALL, coalesce: true, ..TapConfig::default() },
                        big.clone(),
                    ),
                    None => (TapConfig::default(), self.pool.clone()),
                };
                let tap = TapNic::create(id, cfg, pool).map_err(|e| nic_err(id, e))?;
                link_up(id).map_err(|e| nic_err(id, e))?;
                // A TAP brick faces east (a physical NIC); as a VM endpoint it must face west.
                Ok(Box::new(Flipped::new(tap)))
            }
            NicType::Bench => Err(nic_err(id, "BENCH NICs are not supported by butterflyd")),
        }
    }

    fn add_nic(&mut self, info: &NicInfo, rules: Option<CompiledRuleset>) -> Result<(), DataplaneError> {
        let id = info.spec.id.clone();
        let vni = info.spec.vni;
        let endpoint = self.endpoint(info)?;
        let bypass = info.spec.bypass_filtering;
        let firewall = match (bypass, rules) {
            (true, _) => None,
            (false, Some(r)) => Some(Firewall::with_ruleset(FirewallConfig::default(), r)),
            (false, None) => Some(Firewall::new(FirewallConfig::default())),
        };
        let antispoof = if bypass {
            None
        } else {
            Some(
                AntiSpoof::new(
                    info.spec.mac.octets(),
                    &info.spec.ips,
                    antispoof_options(info.spec.ip_anti_spoof),
                )
                .map_err(|e| nic_err(&id, e))?,
            )
        };
        let sniffer = if info.packet_trace {
            Some(
                Sniffer::to_file(&info.packet_trace_path, SnifferDirection::Both)
                    .map_err(|e| nic_err(&id, format!("packet trace {}: {e}", info.packet_trace_path)))?,
            )
        } else {
            None
        };
        let existing_switch = self.vnis.get(&vni).map(|v| v.switch);
        let new_switch = match existing_switch {
            Some(_) => None,
            None => {
                Some(Switch::new(SwitchConfig::default(), self.pool.clone()).map_err(|e| nic_err(&id, e))?)
            }
        };
        let vtep = self.vtep;
        let nid = id.clone();
        let sniffer_path = sniffer.as_ref().map(|_| info.packet_trace_path.clone());
        let ids = self.handle.exec(move |g| -> Result<AddedNic, String> {
            let mut added: Vec<BrickId> = Vec::new();
            let result = (|| -> Result<_, String> {
                let switch = match (existing_switch, new_switch) {
                    (Some(s), _) => s,
                    (None, Some(sw)) => {
                        let s = g.add(format!("switch-{vni}"), sw).map_err(|e| e.to_string())?;
                        added.push(s);
                        let (port, _) = g.link(vtep, s).map_err(|e| e.to_string())?;
                        g.brick_mut::<Vtep>(vtep)
                            .map_err(|e| e.to_string())?
                            .add_vni(vni, port)
                            .map_err(|e| e.to_string())?;
                        s
                    }
                    (None, None) => return Err("internal: no switch".into()),
                };
                let mut chain = vec![switch];
                let mut opt = [None, None, None];
                if let Some(fw) = firewall {
                    let b = g.add(format!("fw-{nid}"), fw).map_err(|e| e.to_string())?;
                    added.push(b);
                    chain.push(b);
                    opt[0] = Some(b);
                }
                if let Some(a) = antispoof {
                    let b = g.add(format!("antispoof-{nid}"), a).map_err(|e| e.to_string())?;
                    added.push(b);
                    chain.push(b);
                    opt[1] = Some(b);
                }
                if let Some(s) = sniffer {
                    let b = g.add(format!("sniff-{nid}"), s).map_err(|e| e.to_string())?;
                    added.push(b);
                    chain.push(b);
                    opt[2] = Some(b);
                }
                let ep = g.add_boxed(format!("vm-{nid}"), endpoint).map_err(|e| e.to_string())?;
                added.push(ep);
                chain.push(ep);
                g.chain(&chain).map_err(|e| e.to_string())?;
                let stats = g.stats(ep).map_err(|e| e.to_string())?;
                Ok((switch, opt, ep, stats))
            })();
            if result.is_err() {
                // Roll back: the graph is as it was before this NIC.
                if existing_switch.is_none() {
                    let _ = g.brick_mut::<Vtep>(vtep).map(|v| v.remove_vni(vni));
                }
                for b in added.into_iter().rev() {
                    let _ = g.remove(b);
                }
            }
            result
        })?;
        let (switch, [fw, asp, sn], ep, stats) = ids.map_err(|e| nic_err(&id, e))?;
        self.vnis.entry(vni).or_insert(VniState { switch, nics: 0 }).nics += 1;
        self.nics.insert(
            id,
            NicBricks {
                vni,
                structure: Structure::of(info),
                firewall: fw,
                antispoof: asp,
                sniffer: sn,
                sniffer_path,
                endpoint: ep,
                endpoint_stats: stats,
            },
        );
        Ok(())
    }

    fn remove_nic(&mut self, id: &str) -> Result<(), DataplaneError> {
        let removed = self.take_nic(id)?;
        // Bricks are dropped here, on the control thread: tearing down a vhost-user backend
        // or closing a TAP takes milliseconds that the data plane must not wait for.
        drop(removed);
        Ok(())
    }

    /// Takes NIC `id`'s bricks out of the graph and returns them (to be dropped off the
    /// data-plane thread).
    fn take_nic(&mut self, id: &str) -> Result<Vec<Box<dyn Brick>>, DataplaneError> {
        let Some(n) = self.nics.remove(id) else { return Ok(Vec::new()) };
        let last = self.vnis.get(&n.vni).is_some_and(|v| v.nics <= 1);
        let switch = self.vnis.get(&n.vni).map(|v| v.switch);
        let vtep = self.vtep;
        let vni = n.vni;
        let bricks: Vec<BrickId> =
            [Some(n.endpoint), n.sniffer, n.antispoof, n.firewall].into_iter().flatten().collect();
        let removed = self.handle.exec(move |g| {
            let mut removed: Vec<Box<dyn Brick>> =
                bricks.into_iter().filter_map(|b| g.remove(b).ok()).collect();
            if last {
                let _ = g.brick_mut::<Vtep>(vtep).map(|v| v.remove_vni(vni));
                if let Some(s) = switch {
                    removed.extend(g.remove(s).ok());
                }
            }
            removed
        })?;
        if last {
            self.vnis.remove(&n.vni);
        } else if let Some(v) = self.vnis.get_mut(&n.vni) {
            v.nics -= 1;
        }
        Ok(removed)
    }

    fn update_nic(
        &mut self,
        id: &str,
        info: &NicInfo,
        rules: Option<CompiledRuleset>,
    ) -> Result<(), DataplaneError> {
        let Some(cur) = self.nics.get(id).cloned() else { return Err(nic_err(id, "not in the data plane")) };
        let ips = info.spec.ips.clone();
        let opts = antispoof_options(info.spec.ip_anti_spoof);
        let want_trace = info.packet_trace.then(|| info.packet_trace_path.clone());
        let new_sniffer = match &want_trace {
            Some(path) if cur.sniffer_path.as_deref() != Some(path.as_str()) => Some(
                Sniffer::to_file(path, SnifferDirection::Both)
                    .map_err(|e| nic_err(id, format!("packet trace {path}: {e}")))?,
            ),
            _ => None,
        };
        let stop_trace = want_trace.is_none() && cur.sniffer.is_some();
        let prev = cur.antispoof.or(cur.firewall).unwrap_or_else(|| self.vnis[&cur.vni].switch);
        let nid = id.to_string();
        let c = cur.clone();
        let new_sniffer_id = self.handle.exec(move |g| -> Result<Option<Option<BrickId>>, String> {
            if let (Some(fw), Some(r)) = (c.firewall, rules) {
                g.brick_mut::<Firewall>(fw).map_err(|e| e.to_string())?.replace_ruleset(r);
            }
            if let Some(a) = c.antispoof {
                let a = g.brick_mut::<AntiSpoof>(a).map_err(|e| e.to_string())?;
                a.set_ips(&ips).map_err(|e| e.to_string())?;
                a.set_options(opts);
            }
            let mut changed = None;
            if stop_trace || new_sniffer.is_some() {
                if let Some(old) = c.sniffer {
                    // Dropping a sniffer only flushes a buffered file: cheap enough here.
                    g.remove(old).map_err(|e| e.to_string())?;
                } else {
                    g.unlink_between(prev, c.endpoint).map_err(|e| e.to_string())?;
                }
                match new_sniffer {
                    Some(s) => {
                        let b = g.add(format!("sniff-{nid}"), s).map_err(|e| e.to_string())?;
                        g.chain(&[prev, b, c.endpoint]).map_err(|e| e.to_string())?;
                        changed = Some(Some(b));
                    }
                    None => {
                        g.link(prev, c.endpoint).map_err(|e| e.to_string())?;
                        changed = Some(None);
                    }
                }
            }
            Ok(changed)
        })?;
        let changed = new_sniffer_id.map_err(|e| nic_err(id, e))?;
        if let Some(n) = self.nics.get_mut(id) {
            if let Some(s) = changed {
                n.sniffer = s;
                n.sniffer_path = s.and(want_trace);
            }
        }
        Ok(())
    }

    /// Removes every NIC and stops the graph thread.
    pub fn shutdown(&mut self) {
        let ids: Vec<String> = self.nics.keys().cloned().collect();
        let mut removed = Vec::new();
        for id in ids {
            if let Ok(b) = self.take_nic(&id) {
                removed.extend(b);
            }
        }
        // Tear the bricks down in parallel: each vhost-user backend stops its own thread.
        let chunk = removed.len().div_ceil(32).max(1);
        let mut chunks = Vec::new();
        while !removed.is_empty() {
            let rest = removed.split_off(removed.len().saturating_sub(chunk));
            chunks.push(rest);
        }
        std::thread::scope(|s| {
            for c in chunks {
                s.spawn(move || drop(c));
            }
        });
        if let Some(r) = self.runner.take() {
            let _ = r.stop();
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn antispoof_options(ip_anti_spoof: bool) -> AntiSpoofOptions {
    // The MAC is always checked; addresses only when the API asks for anti-spoofing.
    AntiSpoofOptions {
        check_ip: ip_anti_spoof,
        check_arp: ip_anti_spoof,
        check_ndp: ip_anti_spoof,
        ..AntiSpoofOptions::default()
    }
}
