//! The data plane: one graph per worker thread, each changed through its command channel.
//!
//! ```text
//! underlay NIC ── [steer] ── vtep ──(one port per VNI)── switch-<vni> ── fw-<nic> ── antispoof-<nic> ── [sniff-<nic>] ── vm-<nic>
//! ```
//!
//! With `--workers N`, worker `i` owns the VNIs `v` with `v % N == i`: their switches and
//! every NIC in them live in its graph, so a VNI's traffic never crosses threads inside the
//! host. Each worker has its own VTEP and its own share of the underlay (an AF_PACKET socket
//! in a fanout group that the kernel steers by VNI, one queue of a multiqueue TAP, or one
//! DPDK queue pair); a `steer` brick ([`VniSteer`]) in front of each VTEP forwards the frames
//! that landed on the wrong worker through a queue to their owner and copies ARP/ND/IGMP to
//! every worker.
//!
//! Every change (a NIC added, removed or updated) is one closure run by the owning graph's
//! thread between two poll rounds: other NICs' traffic never stops, and a failed change is
//! rolled back before the closure returns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use brick_core::bricks::{Flipped, Sniffer, SnifferDirection};
use brick_core::{
    queue_pair, Brick, BrickId, BrickStats, Graph, GraphHandle, PacketPool, PoolConfig, Runner, RunnerConfig,
    Side,
};
use brick_firewall::{
    AntiSpoof, AntiSpoofOptions, CompiledRuleset, Firewall, FirewallConfig, ImportError, ImportSummary,
    Timestamp,
};
use brick_nic::{AfPacketConfig, AfPacketNic, Fanout, FanoutMode, TapConfig, TapNic, TapOffloads};
use brick_switch::{Switch, SwitchConfig};
use brick_vhost::{Offloads, VhostUserConfig, VhostUserNic};
use brick_vtep::steer::owner_of;
use brick_vtep::{VniOptions, VniSteer, Vtep, VtepConfig};
use butterfly_api::{BumMode, NicInfo, NicType};

use crate::config::{Config, NicMtu, Underlay};
use crate::link::{link_mac, link_up, LinkError};
use crate::mtu::{self, MtuError};
use crate::underlay_trace::{TraceError, UnderlayLink, UnderlayTracer};

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
    /// A NIC's bricks could not be added to, changed in or linked into its graph.
    #[error("NIC {id}: {source}")]
    NicGraph {
        /// NIC id.
        id: String,
        /// The step of the change that failed.
        #[source]
        source: GraphChangeError,
    },
    /// A VNI's flooding (BUM mode) could not be changed in its VTEP.
    #[error("VNI {vni}: {source}")]
    VniBum {
        /// The VNI.
        vni: u32,
        /// What the VTEP said.
        #[source]
        source: GraphChangeError,
    },
    /// The graph thread is gone.
    #[error("data plane: {0}")]
    Graph(#[from] brick_core::GraphError),
    /// A packet pool could not be allocated.
    #[error(transparent)]
    Pool(#[from] brick_core::PoolError),
    /// A worker's VTEP could not be created.
    #[error("vtep: {0}")]
    Vtep(#[source] brick_vtep::VtepError),
    /// A worker's steer brick could not be created.
    #[error("steer: {0}")]
    Steer(#[source] brick_vtep::steer::SteerError),
    /// The queue between two workers' steer bricks could not be created.
    #[error("queue between workers: {0}")]
    WorkerQueue(#[source] std::io::Error),
    /// The underlay's kernel device could not be read or brought up.
    #[error("underlay {0}")]
    UnderlayLink(#[source] LinkError),
    /// The kernel side of a NIC's TAP device could not be brought up.
    #[error("NIC {id}: {source}")]
    NicLink {
        /// NIC id.
        id: String,
        /// What the kernel said.
        #[source]
        source: LinkError,
    },
    /// The underlay device's MTU could not be set (`--nic-mtu`).
    #[error(transparent)]
    Mtu(#[from] MtuError),
    /// The underlay trace could not be switched.
    #[error(transparent)]
    UnderlayTrace(#[from] TraceError),
    /// A worker thread could not be started.
    #[error("cannot start data-plane thread {index}: {source}")]
    SpawnWorker {
        /// Which worker.
        index: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn nic_err(id: &str, why: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Nic { id: id.to_string(), why: why.to_string() }
}

/// Why a change run inside a worker's graph (a closure on its thread) failed. Its text is
/// the underlying error's own, as the API has always answered it.
#[derive(Debug, thiserror::Error)]
pub enum GraphChangeError {
    /// Adding, removing, linking or finding a brick.
    #[error(transparent)]
    Graph(#[from] brick_core::GraphError),
    /// The VTEP refused a VNI or its flooding.
    #[error(transparent)]
    Vtep(#[from] brick_vtep::VtepError),
    /// The switch refused the VM's static MAC.
    #[error(transparent)]
    Switch(#[from] brick_switch::SwitchError),
    /// Anti-spoofing was given too many addresses.
    #[error(transparent)]
    AntiSpoof(#[from] brick_firewall::TooManyAddresses),
    /// The VNI the change is about has no VTEP port.
    #[error("VNI {0} is not in the VTEP")]
    NoVni(u32),
}

/// What the daemon keeps about the bricks of one NIC.
#[derive(Debug, Clone)]
struct NicBricks {
    vni: u32,
    worker: usize,
    structure: Structure,
    firewall: Option<BrickId>,
    antispoof: Option<BrickId>,
    sniffer: Option<BrickId>,
    sniffer_path: Option<String>,
    endpoint: BrickId,
    endpoint_stats: Arc<BrickStats>,
    /// A BENCH NIC's role and figures.
    bench: Option<crate::bench::BenchHandle>,
}

/// The parts of a NIC that need its bricks rebuilt when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Structure {
    mac: [u8; 6],
    vni: u32,
    nic_type: NicType,
    bypass: bool,
    vhost_client: bool,
    /// A BENCH NIC's addresses (its endpoint sends from / answers on them).
    bench_ips: Vec<IpAddr>,
}

impl Structure {
    fn of(info: &NicInfo) -> Structure {
        Structure {
            mac: info.spec.mac.octets(),
            vni: info.spec.vni,
            nic_type: info.spec.nic_type,
            bypass: info.spec.bypass_filtering,
            vhost_client: info.spec.vhost_user_client,
            bench_ips: match info.spec.nic_type {
                NicType::Bench => info.spec.ips.clone(),
                _ => Vec::new(),
            },
        }
    }
}

struct VniState {
    switch: BrickId,
    nics: usize,
    /// When its VTEP VNI was created (EVPN replays its remote state into a new one).
    generation: u64,
}

/// Ids of a NIC's bricks once added to its worker's graph.
struct AddedNic {
    switch: BrickId,
    firewall: Option<BrickId>,
    antispoof: Option<BrickId>,
    sniffer: Option<BrickId>,
    endpoint: BrickId,
    endpoint_stats: Arc<BrickStats>,
}

/// One worker thread: its graph's runner, and the VTEP in it.
struct Worker {
    runner: Option<Runner>,
    handle: GraphHandle,
    vtep: BrickId,
}

/// The running data plane.
pub struct Dataplane {
    workers: Vec<Worker>,
    pool: PacketPool,
    /// Big buffers (64 KiB TCP super-frames) for what receives from TAPs with TSO: VM TAPs
    /// and a TAP underlay. `None` with `--no-offload`.
    big_pool: Option<PacketPool>,
    offload: bool,
    vnis: HashMap<u32, VniState>,
    nics: HashMap<String, NicBricks>,
    /// Our VTEP address, and the scope of IPv6 default groups.
    local_ip: IpAddr,
    ipv6_scope: u8,
    /// BUM mode of the VNIs without one of their own, and the VNIs' own (API vni_set).
    default_bum: BumMode,
    vni_bum: HashMap<u32, BumMode>,
    /// TAP NICs outlive the process (the configuration is persisted, so a restart brings
    /// them back and must find their devices where the VMs are).
    persistent_taps: bool,
    /// Restoring the saved configuration: TAP NICs re-attach to their devices.
    restoring: bool,
    /// A connection table for the firewall of the NIC being built (the hand-over of the
    /// previous process), and what importing it gave.
    pending_import: Option<(String, Vec<u8>, Timestamp)>,
    import_result: Option<(String, Result<ImportSummary, ImportError>)>,
    /// Which VNIs are in EVPN mode, shared with the EVPN agent's graph commands.
    evpn_modes: Arc<crate::evpn::Modes>,
    /// EVPN settings from the configuration.
    evpn_cfg: crate::config::EvpnConfig,
    /// VTEP VNIs created so far.
    generations: u64,
    /// The IP MTU VMs get (the underlay's less the VXLAN overhead) when `--nic-mtu` set
    /// the underlay's: offered to vhost-user guests, set on TAP NICs.
    vm_mtu: Option<u16>,
    /// The underlay trace.
    underlay_trace: UnderlayTracer,
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
/// Big buffers per worker for an AF_PACKET underlay's super-frames with `--no-offload`.
const UNDERLAY_BIG_POOL_COUNT: usize = 64;

/// Opens (creates, or attaches to) the underlay TAP with `queues` queues. With the big pool
/// (offloads on) and an IPv4 underlay it asks for UDP-tunnel GSO, so VXLAN super-frames
/// cross whole both ways (Linux ≥ 6.17); on older kernels it falls back to plain frames.
/// Returns the brick and whether tunnel super-frames are on.
fn open_underlay_tap(
    name: &str,
    queues: u16,
    ipv4: bool,
    pool: &PacketPool,
    big: Option<&PacketPool>,
) -> Result<(TapNic, bool), DataplaneError> {
    let open = |cfg: TapConfig, pool: &PacketPool| {
        TapNic::create(name, cfg.clone(), pool.clone()).or_else(|_| TapNic::attach(name, cfg, pool.clone()))
    };
    if let (Some(big), true) = (big, ipv4) {
        let cfg = TapConfig { offloads: TapOffloads::TUNNEL, queues, ..TapConfig::default() };
        if let Ok(tap) = open(cfg, big) {
            return Ok((tap, true));
        }
    }
    let tap =
        open(TapConfig { queues, ..TapConfig::default() }, pool).map_err(|e| DataplaneError::Underlay {
            what: format!("tap {name}"),
            why: format!("{e} (creating a TAP needs root or CAP_NET_ADMIN; or use --underlay none)"),
        })?;
    Ok((tap, false))
}

/// Opens one AF_PACKET socket per worker on `iface`. With several, they join one fanout
/// group whose kernel program hands each VXLAN frame to the socket of its VNI's owner.
/// Frames too big for `pool` (the TCP super-frames a local kernel hands over whole, e.g. a
/// kernel VXLAN peer across a veth) are received into `big`.
fn open_underlay_afpacket(
    iface: &str,
    workers: usize,
    udp_port: u16,
    pool: &PacketPool,
    big: &PacketPool,
) -> Result<Vec<AfPacketNic>, DataplaneError> {
    let underlay = |why: String| DataplaneError::Underlay { what: format!("af-packet {iface}"), why };
    // Low-latency receive ring: TPACKET_V3 blocks would add up to 1 ms per hop.
    let mut afp = AfPacketConfig { low_latency: true, ..AfPacketConfig::default() };
    if workers > 1 {
        // Group ids are per network namespace; the pid keeps two daemons apart.
        let group = (std::process::id() % 0xfff0) as u16 + 1;
        afp.fanout = Some(Fanout { group, mode: FanoutMode::Program, rollover: false });
    }
    let mut nics = Vec::with_capacity(workers);
    for _ in 0..workers {
        // Join order is the socket's index in the group: worker i joins i-th.
        nics.push(
            AfPacketNic::open(iface, afp.clone(), pool.clone())
                .map_err(|e| underlay(e.to_string()))?
                .with_big_pool(big.clone()),
        );
    }
    if workers > 1 {
        nics[0]
            .set_fanout_program(&brick_nic::bpf::vxlan_vni_fanout(udp_port))
            .map_err(|e| underlay(e.to_string()))?;
    }
    Ok(nics)
}

/// The CPU of worker `i` when worker 0 is pinned to `first`: the next ones this process may
/// use, in order, wrapping around (with `taskset -c 4,5` and `-u 4`, worker 1 gets CPU 5).
fn worker_cpu(first: usize, i: usize) -> usize {
    let allowed = brick_core::allowed_cpus().unwrap_or_default();
    match allowed.iter().position(|&c| c == first) {
        Some(at) => allowed[(at + i) % allowed.len()],
        None => first + i,
    }
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

/// A NIC's anti-spoofing (none when it bypasses filtering): its MAC, IPs, the EUI-64
/// link-local address of its MAC and those the API gave.
fn nic_antispoof(info: &NicInfo) -> Result<Option<AntiSpoof>, DataplaneError> {
    if info.spec.bypass_filtering {
        return Ok(None);
    }
    let id = &info.spec.id;
    let mut a =
        AntiSpoof::new(info.spec.mac.octets(), &info.spec.ips, antispoof_options(info.spec.ip_anti_spoof))
            .map_err(|e| nic_err(id, e))?;
    a.set_link_local(&info.spec.link_local).map_err(|e| nic_err(id, e))?;
    Ok(Some(a))
}

/// A NIC's packet trace, when asked for.
fn nic_sniffer(info: &NicInfo) -> Result<Option<Sniffer>, DataplaneError> {
    if !info.packet_trace {
        return Ok(None);
    }
    Sniffer::to_file(&info.packet_trace_path, SnifferDirection::Both)
        .map(Some)
        .map_err(|e| nic_err(&info.spec.id, format!("packet trace {}: {e}", info.packet_trace_path)))
}

/// The bricks of a NIC, built before they go into its worker's graph.
struct NicParts {
    firewall: Option<Firewall>,
    antispoof: Option<AntiSpoof>,
    sniffer: Option<Sniffer>,
    endpoint: Box<dyn Brick>,
}

/// The switch a NIC joins: its VNI's, or a new one for a VNI's first NIC.
enum SwitchOf {
    Existing(BrickId),
    New(Box<Switch>),
}

/// Where a NIC goes in its worker's graph.
struct NicPlace {
    id: String,
    vni: u32,
    vm_mac: [u8; 6],
    vtep: BrickId,
    /// The VNI's flooding, for a new VNI.
    bum: VniOptions,
    switch: SwitchOf,
}

/// Adds a NIC's bricks to graph `g` (on its worker's thread) as switch → firewall →
/// anti-spoofing → trace → endpoint; on failure, removes what it added.
fn insert_nic(g: &mut Graph, place: NicPlace, parts: NicParts) -> Result<AddedNic, GraphChangeError> {
    let new_vni = matches!(place.switch, SwitchOf::New(_));
    let (vni, vtep) = (place.vni, place.vtep);
    let mut added: Vec<BrickId> = Vec::new();
    let result = link_nic(g, place, parts, &mut added);
    if result.is_err() {
        // Roll back: the graph is as it was before this NIC.
        if new_vni {
            let _ = g.brick_mut::<Vtep>(vtep).map(|v| v.remove_vni(vni));
        }
        for b in added.into_iter().rev() {
            let _ = g.remove(b);
        }
    }
    result
}

/// The steps of [`insert_nic`], each brick recorded in `added` as it joins.
fn link_nic(
    g: &mut Graph,
    place: NicPlace,
    parts: NicParts,
    added: &mut Vec<BrickId>,
) -> Result<AddedNic, GraphChangeError> {
    let NicPlace { id, vni, vm_mac, vtep, bum, switch } = place;
    let switch = match switch {
        SwitchOf::Existing(s) => s,
        SwitchOf::New(sw) => {
            let s = g.add_boxed(format!("switch-{vni}"), sw)?;
            added.push(s);
            let (port, _) = g.link(vtep, s)?;
            // Flooding as the VNI's BUM mode says (group or flood list).
            g.brick_mut::<Vtep>(vtep)?.add_vni_with(vni, port, bum)?;
            s
        }
    };
    let mut add = |g: &mut Graph, name: String, b: Box<dyn Brick>| -> Result<BrickId, GraphChangeError> {
        let b = g.add_boxed(name, b)?;
        added.push(b);
        Ok(b)
    };
    let firewall = parts.firewall.map(|f| add(g, format!("fw-{id}"), Box::new(f))).transpose()?;
    let antispoof = parts.antispoof.map(|a| add(g, format!("antispoof-{id}"), Box::new(a))).transpose()?;
    let sniffer = parts.sniffer.map(|s| add(g, format!("sniff-{id}"), Box::new(s))).transpose()?;
    let endpoint = add(g, format!("vm-{id}"), parts.endpoint)?;
    let chain: Vec<BrickId> = [firewall, antispoof, sniffer, Some(endpoint)].into_iter().flatten().collect();
    let (switch_port, _) = g.link(switch, chain[0])?;
    g.chain(&chain)?;
    // The VM's MAC is pinned to its port: a frame from the wire (or another VM) with that
    // source cannot move it and draw the VM's traffic away. Unlinking the port forgets it.
    g.brick_mut::<Switch>(switch)?.add_static(vm_mac, Side::East, switch_port)?;
    Ok(AddedNic { switch, firewall, antispoof, sniffer, endpoint, endpoint_stats: g.stats(endpoint)? })
}

/// The packet pool of `workers` workers, and the pool of big buffers for super-frames
/// (TSO/GSO) when offloads are on.
fn packet_pools(workers: usize, offload: bool) -> Result<(PacketPool, Option<PacketPool>), DataplaneError> {
    let extra = workers - 1;
    // Each extra worker holds a few more bursts in flight and in its pool caches.
    let pool = PacketPool::new(PoolConfig { count: 16384 + 4096 * extra, ..PoolConfig::default() })?;
    let big_pool = if offload {
        Some(PacketPool::new(PoolConfig {
            count: BIG_POOL_COUNT + BIG_POOL_COUNT / 4 * extra,
            data_room: BIG_DATA_ROOM,
            ..PoolConfig::default()
        })?)
    } else {
        None
    };
    Ok((pool, big_pool))
}

/// Opens the underlay: one brick per worker (none with `--underlay none`), the VTEPs' MAC
/// and tunnel GSO set in `vcfg`, and the MTU `--nic-mtu` gave the device, if it did.
fn open_underside(
    cfg: &Config,
    n: usize,
    pool: &PacketPool,
    big_pool: Option<&PacketPool>,
    vcfg: &mut VtepConfig,
) -> Result<(UnderlayBricks, Option<u16>), DataplaneError> {
    let mut underlay_mtu = None;
    let (phys, local_mac): Underside = match &cfg.underlay {
        Underlay::Tap(name) => {
            let (tap, tunnel) = open_underlay_tap(name, n as u16, cfg.ip.is_ipv4(), pool, big_pool)?;
            // Whether the underlay takes VXLAN super-frames whole (UDP-tunnel GSO).
            vcfg.tunnel_gso = tunnel;
            if let Some(want) = cfg.nic_mtu {
                underlay_mtu = Some(mtu::apply(name, want)?);
            }
            link_up(name).map_err(DataplaneError::UnderlayLink)?;
            let queues = if n > 1 { tap.into_queues() } else { vec![tap] };
            (queues.into_iter().map(|q| Box::new(q) as Box<dyn Brick>).collect(), derived_mac(cfg.ip))
        }
        Underlay::AfPacket(iface) => {
            let mac = link_mac(iface).map_err(DataplaneError::UnderlayLink)?;
            if let Some(want) = cfg.nic_mtu {
                underlay_mtu = Some(mtu::apply(iface, want)?);
            }
            // A local kernel's super-frames arrive whole whatever `--no-offload` says (it is
            // about what VMs are offered): without offloads, a small big pool.
            let big = match big_pool {
                Some(b) => b.clone(),
                None => PacketPool::new(PoolConfig {
                    count: UNDERLAY_BIG_POOL_COUNT * n,
                    data_room: BIG_DATA_ROOM,
                    ..PoolConfig::default()
                })?,
            };
            let nics = open_underlay_afpacket(iface, n, vcfg.udp_port, pool, &big)?;
            (nics.into_iter().map(|q| Box::new(q) as Box<dyn Brick>).collect(), mac)
        }
        Underlay::Dpdk(port) => {
            let ((nics, mac), mtu) = dpdk_underlay(*port, &cfg.dpdk_args, n, pool.clone(), cfg.nic_mtu)?;
            underlay_mtu = mtu;
            // Virtual devices (net_ring, net_null) have an all-zero MAC.
            (nics, if mac == [0; 6] { derived_mac(cfg.ip) } else { mac })
        }
        Underlay::None => (Vec::new(), derived_mac(cfg.ip)),
    };
    vcfg.local_mac = local_mac;
    Ok((phys, underlay_mtu))
}

/// A worker's graph before its thread starts, and its VTEP.
type WorkerGraph = (Graph, BrickId);
/// Where a worker's underlay brick sends what it receives: (worker, underlay, next brick).
type UnderlayHop = (usize, BrickId, BrickId);

/// The graphs of `n` workers: each its underlay brick (none with `--underlay none`), a
/// steer brick when there are several workers, and its VTEP; steer bricks joined by a queue
/// each way.
fn worker_graphs(
    n: usize,
    vcfg: &VtepConfig,
    pool: &PacketPool,
    phys: Vec<Box<dyn Brick>>,
) -> Result<(Vec<WorkerGraph>, Vec<UnderlayHop>), DataplaneError> {
    let mut phys = phys.into_iter();
    let mut underlay_links = Vec::with_capacity(n);
    let mut graphs = Vec::with_capacity(n);
    let mut steers = Vec::with_capacity(n);
    for i in 0..n {
        let mut graph =
            Graph::new(if n == 1 { "butterflyd".to_string() } else { format!("butterflyd-w{i}") });
        let vtep = Vtep::new(vcfg.clone(), pool.clone()).map_err(DataplaneError::Vtep)?;
        let vtep = graph.add("vtep", vtep)?;
        let mut steer = None;
        if let Some(phy) = phys.next() {
            let nic = graph.add_boxed("underlay", phy)?;
            if n > 1 {
                let s = VniSteer::new(i, n, vcfg.udp_port, pool.clone()).map_err(DataplaneError::Steer)?;
                let s = graph.add("steer", s)?;
                graph.chain(&[nic, s, vtep])?;
                underlay_links.push((i, nic, s));
                steer = Some(s);
            } else {
                graph.link(nic, vtep)?;
                underlay_links.push((i, nic, vtep));
            }
        }
        steers.push(steer);
        graphs.push((graph, vtep));
    }
    link_steers(&mut graphs, &steers)?;
    Ok((graphs, underlay_links))
}

/// A queue each way between every two workers' steer bricks, for frames the underlay
/// delivered to a worker that does not own their VNI.
fn link_steers(graphs: &mut [WorkerGraph], steers: &[Option<BrickId>]) -> Result<(), DataplaneError> {
    for (from, s_from) in steers.iter().enumerate() {
        for (to, s_to) in steers.iter().enumerate() {
            let (Some(s_from), Some(s_to)) = (*s_from, *s_to) else { continue };
            if from == to {
                continue;
            }
            let (tx, rx) = queue_pair(64).map_err(DataplaneError::WorkerQueue)?;
            let g = &mut graphs[from].0;
            let tx = g.add(format!("to-w{to}"), tx)?;
            let (port, _) = g.link(s_from, tx)?;
            g.brick_mut::<VniSteer>(s_from)?.set_worker_port(to, port);
            let g = &mut graphs[to].0;
            let rx = g.add(format!("from-w{from}"), rx.emit_on(Side::West))?;
            g.link(s_to, rx)?;
        }
    }
    Ok(())
}

/// Starts a data-plane thread per graph, pinned and polling as the configuration says.
fn spawn_workers(cfg: &Config, graphs: Vec<WorkerGraph>) -> Result<Vec<Worker>, DataplaneError> {
    let n = graphs.len();
    let mut workers = Vec::with_capacity(n);
    for (i, (graph, vtep)) in graphs.into_iter().enumerate() {
        let runner = Runner::spawn(
            graph,
            RunnerConfig {
                name: if n == 1 { "dataplane".into() } else { format!("dataplane-{i}") },
                cpu: cfg.graph_cpu_core.map(|c| worker_cpu(c, i)),
                idle_rounds: if cfg.busy_poll { u32::MAX } else { RunnerConfig::default().idle_rounds },
                // Unpinned default: sleep on the sources' wake fds as soon as a round is
                // empty (any spin was slower with TAP VMs on a shared 2-vCPU machine);
                // pinned: poll a little longer than a wake-up takes (--poll-spin).
                spin: if cfg.busy_poll { std::time::Duration::MAX } else { cfg.poll_spin },
                ..RunnerConfig::default()
            },
        )
        .map_err(|source| DataplaneError::SpawnWorker { index: i, source })?;
        workers.push(Worker { handle: runner.handle(), runner: Some(runner), vtep });
    }
    Ok(workers)
}

/// The underlay NIC bricks, one per worker.
type UnderlayBricks = Vec<Box<dyn Brick>>;
/// The underlay NIC bricks and the MAC the VTEP uses on them.
type Underside = (UnderlayBricks, [u8; 6]);

#[cfg(feature = "dpdk")]
fn dpdk_underlay(
    port: u16,
    args: &str,
    workers: usize,
    pool: PacketPool,
    want_mtu: Option<NicMtu>,
) -> Result<(Underside, Option<u16>), DataplaneError> {
    use brick_nic::{DpdkConfig, DpdkNic, Eal, PortSpec};
    let what = format!("dpdk port {port}");
    let underlay = |why: String| DataplaneError::Underlay { what: what.clone(), why };
    let args: Vec<&str> = args.split_whitespace().collect();
    let eal = Eal::init(&args).map_err(|e| underlay(format!("EAL ({}): {e}", args.join(" "))))?;
    // One queue pair per worker; the port's RSS spreads frames over them and the steer
    // bricks carry those of other workers' VNIs to their owner.
    let cfg = DpdkConfig { port: PortSpec::Id(port), queues: workers as u16, ..DpdkConfig::default() };
    let mut nic =
        DpdkNic::open(eal, cfg, pool).map_err(|e| underlay(format!("{e} ({workers} worker(s))")))?;
    let mac = nic.mac().map_err(|e| underlay(e.to_string()))?;
    let mtu = match want_mtu {
        None => None,
        Some(want) => {
            let mtu = match want {
                NicMtu::Value(v) => v,
                NicMtu::Max => {
                    let l = nic.mtu_limits().map_err(|e| underlay(e.to_string()))?;
                    mtu::dpdk_max_mtu(l.max_mtu, l.max_rx_pktlen)
                }
            };
            nic.set_mtu(mtu).map_err(|e| underlay(format!("refused MTU {mtu} (--nic-mtu {want}): {e}")))?;
            Some(nic.mtu().map_err(|e| underlay(e.to_string()))?)
        }
    };
    let bricks = if workers > 1 { nic.into_queues() } else { vec![nic] };
    Ok(((bricks.into_iter().map(|b| Box::new(b) as Box<dyn Brick>).collect(), mac), mtu))
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_underlay(
    port: u16,
    _args: &str,
    _workers: usize,
    _pool: PacketPool,
    _want_mtu: Option<NicMtu>,
) -> Result<(Underside, Option<u16>), DataplaneError> {
    // Config::from_cli already refuses this; kept as a clear error for library callers.
    Err(DataplaneError::Underlay {
        what: format!("dpdk port {port}"),
        why: "this butterflyd was built without the `dpdk` feature".into(),
    })
}

impl Dataplane {
    /// Builds the underlay side (NIC + VTEP) of every worker and starts their threads.
    pub fn start(cfg: &Config) -> Result<Dataplane, DataplaneError> {
        let n = cfg.workers.max(1);
        let (pool, big_pool) = packet_pools(n, cfg.offload)?;
        let mut vcfg = VtepConfig::new(cfg.ip, [0; 6]);
        vcfg.gateway = cfg.gateway;
        vcfg.prefix_len = cfg.underlay_prefix;
        let (phys, underlay_mtu) = open_underside(cfg, n, &pool, big_pool.as_ref(), &mut vcfg)?;
        let vm_mtu = underlay_mtu.map(|m| {
            vcfg.mtu = m;
            let vm = mtu::vm_mtu(m, cfg.ip);
            tracing::info!(
                "underlay MTU {m} (--nic-mtu {}); VMs get MTU {vm}",
                cfg.nic_mtu.unwrap_or(NicMtu::Max)
            );
            vm
        });
        let (graphs, underlay_links) = worker_graphs(n, &vcfg, &pool, phys)?;
        let workers = spawn_workers(cfg, graphs)?;
        let underlay_links = underlay_links
            .into_iter()
            .map(|(i, nic, next)| UnderlayLink { handle: workers[i].handle.clone(), nic, next })
            .collect();
        let mut underlay_trace = UnderlayTracer::new(underlay_links, cfg.underlay_trace.path.clone());
        if cfg.underlay_trace.on {
            underlay_trace.start(&cfg.underlay_trace.path)?;
            tracing::info!("underlay trace: on, into {}", cfg.underlay_trace.path.display());
        }
        Ok(Dataplane {
            workers,
            pool,
            big_pool,
            offload: cfg.offload,
            vnis: HashMap::new(),
            nics: HashMap::new(),
            local_ip: cfg.ip,
            ipv6_scope: vcfg.ipv6_scope,
            default_bum: cfg.bum.clone(),
            vni_bum: HashMap::new(),
            persistent_taps: cfg.state_dir.is_some(),
            restoring: false,
            pending_import: None,
            import_result: None,
            evpn_modes: Arc::new(crate::evpn::Modes::new(matches!(cfg.bum, BumMode::Evpn { .. }))),
            evpn_cfg: cfg.evpn.clone(),
            generations: 0,
            vm_mtu,
            underlay_trace,
        })
    }

    /// Sets the connection table that NIC `id`'s firewall imports when it is next built,
    /// before it joins the graph (deadlines counted from `now`); an empty table clears it.
    /// The outcome is kept for [`take_import_result`](Self::take_import_result).
    pub fn set_pending_import(&mut self, id: &str, table: Vec<u8>, now: Timestamp) {
        self.pending_import = (!table.is_empty()).then(|| (id.to_string(), table, now));
    }

    /// What importing NIC `id`'s pending table gave, if it was imported.
    pub fn take_import_result(&mut self, id: &str) -> Option<Result<ImportSummary, ImportError>> {
        match self.import_result.take() {
            Some((nic, r)) if nic == id => Some(r),
            _ => None,
        }
    }

    /// While `on`, TAP NICs being created re-attach to their device if it exists (a
    /// persistent TAP left by the previous process, in this namespace or in the one it was
    /// moved to) instead of creating it. For restoring the saved configuration.
    pub fn set_restoring(&mut self, on: bool) {
        self.restoring = on;
    }

    /// The connection-table export of every NIC with a firewall, one command per worker
    /// (so the tables are taken within a few microseconds of each other on each worker).
    pub fn export_all(&self) -> Result<Vec<(String, Vec<u8>)>, DataplaneError> {
        let mut out = Vec::with_capacity(self.nics.len());
        for (w, worker) in self.workers.iter().enumerate() {
            let fws: Vec<(String, BrickId)> = self
                .nics
                .iter()
                .filter(|(_, n)| n.worker == w)
                .filter_map(|(id, n)| Some((id.clone(), n.firewall?)))
                .collect();
            if fws.is_empty() {
                continue;
            }
            out.extend(worker.handle.exec(move |g| {
                let now = Timestamp::now();
                fws.into_iter()
                    .filter_map(|(id, fw)| Some((id, g.brick::<Firewall>(fw).ok()?.export_connections(now))))
                    .collect::<Vec<_>>()
            })?);
        }
        Ok(out)
    }

    /// Imports a connection-table export into NIC `id`'s firewall, deadlines counted from
    /// `now` (see `Firewall::import_connections_of`; `addrs` empty: no address check). `None`
    /// when the NIC has no firewall. All or nothing.
    pub fn import_connections(
        &self,
        id: &str,
        bytes: Vec<u8>,
        now: Timestamp,
        addrs: Vec<IpAddr>,
    ) -> Result<Option<Result<ImportSummary, ImportError>>, DataplaneError> {
        let Some(n) = self.nics.get(id) else { return Err(nic_err(id, "not in the data plane")) };
        let Some(fw) = n.firewall else { return Ok(None) };
        let r = self.workers[n.worker].handle.exec(move |g| {
            let f = g.brick_mut::<Firewall>(fw)?;
            Ok::<_, brick_core::GraphError>(if addrs.is_empty() {
                f.import_connections(&bytes, now).map(|imported| ImportSummary { imported, skipped: 0 })
            } else {
                f.import_connections_of(&bytes, now, &addrs)
            })
        })?;
        r.map(Some).map_err(|e| DataplaneError::NicGraph { id: id.to_string(), source: e.into() })
    }

    /// Finds the device of TAP NIC `id` left by the previous process: in this namespace, or
    /// in the one it was moved to (the same name and MAC), and attaches to it. `None` if
    /// there is none.
    fn adopt_tap(
        &self,
        id: &str,
        mac: [u8; 6],
        cfg: TapConfig,
        pool: PacketPool,
    ) -> Result<Option<TapNic>, DataplaneError> {
        if brick_nic::sys::interface_exists(id) {
            let tap = TapNic::attach(id, cfg, pool).map_err(|e| nic_err(id, e))?;
            tap.set_mac(mac).map_err(|e| nic_err(id, e))?;
            link_up(id).map_err(|source| DataplaneError::NicLink { id: id.to_string(), source })?;
            tracing::info!("NIC {id}: attached to its TAP device, kept from the previous run");
            return Ok(Some(tap));
        }
        let Some((path, netns)) = brick_nic::netns::find_interface(id, mac)
            .map_err(|e| nic_err(id, format!("looking for its TAP device in other namespaces: {e}")))?
        else {
            return Ok(None);
        };
        let tap = TapNic::attach_in(std::os::fd::AsFd::as_fd(&netns), id, cfg, pool).map_err(|e| {
            nic_err(id, format!("attaching to its TAP device in the namespace of {}: {e}", path.display()))
        })?;
        tracing::info!(
            "NIC {id}: attached to its TAP device, kept from the previous run in the namespace of {}",
            path.display()
        );
        Ok(Some(tap))
    }

    /// The underlay trace's file while it records, `None` while off.
    pub fn underlay_trace(&self) -> Option<&std::path::Path> {
        self.underlay_trace.path()
    }

    /// Switches the underlay trace on (into `path`, or `--underlay-trace-path`) or off. On
    /// failure nothing changes.
    pub fn set_underlay_trace(
        &mut self,
        on: bool,
        path: Option<&std::path::Path>,
    ) -> Result<(), DataplaneError> {
        if on {
            let p = path.unwrap_or(self.underlay_trace.default_path()).to_path_buf();
            self.underlay_trace.start(&p)?;
        } else {
            self.underlay_trace.stop()?;
        }
        Ok(())
    }

    /// Our VTEP address.
    pub fn local_ip(&self) -> IpAddr {
        self.local_ip
    }

    /// The BUM mode in effect for `vni`, with a multicast group always named (the VNI's
    /// default one when none is set), and whether it is the VNI's own.
    pub fn bum_of(&self, vni: u32) -> (BumMode, bool) {
        let (mode, own) = match self.vni_bum.get(&vni) {
            Some(m) => (m.clone(), true),
            None => (self.default_bum.clone(), false),
        };
        let mode = match mode {
            BumMode::Multicast { group: None } => BumMode::Multicast {
                group: Some(brick_vtep::default_group(vni, self.local_ip.is_ipv6(), self.ipv6_scope)),
            },
            m => m,
        };
        (mode, own)
    }

    /// What the VTEP gets for `vni`: a group to join and flood to, or a flood list.
    fn vni_options(&self, vni: u32) -> VniOptions {
        match self.bum_of(vni).0 {
            BumMode::Multicast { group } => VniOptions { group, flood: Vec::new() },
            BumMode::Unicast { flood } => VniOptions { group: None, flood },
            // The EVPN agent sets the list from type-3 routes once the VNI exists.
            BumMode::Evpn { .. } => VniOptions { group: None, flood: Vec::new() },
        }
    }

    /// Sets (`Some`) or forgets (`None`, back to the daemon's default) the BUM mode of `vni`,
    /// checked by the caller. A VNI with NICs changes at once, live (its group left or joined,
    /// its flood list replaced); on failure nothing changes. Settings of VNIs without NICs
    /// apply when their first NIC comes.
    pub fn set_vni_bum(&mut self, vni: u32, mode: Option<BumMode>) -> Result<(), DataplaneError> {
        let before = match &mode {
            Some(m) => self.vni_bum.insert(vni, m.clone()),
            None => self.vni_bum.remove(&vni),
        };
        // Before any graph command: the agent's flood lists apply to EVPN VNIs only.
        let evpn_before = self.evpn_modes.is_evpn(vni);
        self.evpn_modes.set(vni, mode.as_ref().map(|m| matches!(m, BumMode::Evpn { .. })));
        if !self.vnis.contains_key(&vni) {
            return Ok(());
        }
        let opts = self.vni_options(vni);
        let vtep = self.workers[self.owner(vni)].vtep;
        let applied = self.workers[self.owner(vni)].handle.exec(move |g| -> Result<(), GraphChangeError> {
            let v = g.brick_mut::<Vtep>(vtep)?;
            let old = v.vni_info(vni).ok_or(GraphChangeError::NoVni(vni))?;
            // The list first: it is checked whole before anything changes.
            v.set_flood(vni, &opts.flood)?;
            if let Err(e) = v.set_group(vni, opts.group) {
                let _ = v.set_flood(vni, &old.flood);
                return Err(e.into());
            }
            Ok(())
        });
        let result = match applied {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(DataplaneError::VniBum { vni, source }),
            Err(e) => Err(e.into()),
        };
        if result.is_err() {
            let own = before.as_ref().map(|m| matches!(m, BumMode::Evpn { .. }));
            match before {
                Some(m) => self.vni_bum.insert(vni, m),
                None => self.vni_bum.remove(&vni),
            };
            self.evpn_modes.set(vni, own);
            debug_assert_eq!(self.evpn_modes.is_evpn(vni), evpn_before);
        }
        result
    }

    /// The VNIs in EVPN mode that have NICs here, with the generation of their VTEP VNI.
    pub fn evpn_vnis(&self) -> Vec<(u32, u64)> {
        let mut v: Vec<(u32, u64)> = self
            .vnis
            .iter()
            .filter(|(&vni, _)| self.evpn_modes.is_evpn(vni))
            .map(|(&vni, st)| (vni, st.generation))
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether some VNI is (or all VNIs without a setting are) in EVPN mode.
    pub fn evpn_wanted(&self) -> bool {
        self.evpn_modes.any()
    }

    /// What the EVPN agent needs: the workers' graphs and VTEPs, and the VNIs' modes.
    pub fn evpn_plane(&self) -> crate::evpn::Plane {
        crate::evpn::Plane::new(
            self.workers.iter().map(|w| (w.handle.clone(), w.vtep)).collect(),
            Arc::clone(&self.evpn_modes),
        )
    }

    /// EVPN settings.
    pub fn evpn_config(&self) -> &crate::config::EvpnConfig {
        &self.evpn_cfg
    }

    /// The flood list `vni`'s VTEP uses now (empty when the VNI has no NIC here).
    pub fn flood_of(&self, vni: u32) -> Result<Vec<IpAddr>, DataplaneError> {
        if !self.vnis.contains_key(&vni) {
            return Ok(Vec::new());
        }
        let vtep = self.workers[self.owner(vni)].vtep;
        Ok(self.workers[self.owner(vni)].handle.exec(move |g| {
            g.brick::<Vtep>(vtep).ok().and_then(|v| v.vni_info(vni)).map(|i| i.flood).unwrap_or_default()
        })?)
    }

    /// The remote VTEPs `vni` knows (behind its learnt MAC entries); empty when the VNI has
    /// no NIC here.
    pub fn remote_vteps(&self, vni: u32) -> Result<Vec<IpAddr>, DataplaneError> {
        if !self.vnis.contains_key(&vni) {
            return Ok(Vec::new());
        }
        let vtep = self.workers[self.owner(vni)].vtep;
        Ok(self.workers[self.owner(vni)].handle.exec(move |g| {
            g.brick::<Vtep>(vtep)
                .map(|v| v.remote_vteps(vni, brick_core::Timestamp::now()))
                .unwrap_or_default()
        })?)
    }

    /// The worker that owns `vni`.
    fn owner(&self, vni: u32) -> usize {
        owner_of(vni, self.workers.len())
    }

    /// Handles on every worker's graph, in worker order (metrics, DOT).
    pub fn handles(&self) -> Vec<GraphHandle> {
        self.workers.iter().map(|w| w.handle.clone()).collect()
    }

    /// The data plane in DOT: the graph, or with several workers one `digraph` holding a
    /// cluster per worker graph (`cluster_w0`…, labelled `butterflyd-w0`…).
    pub fn dot(&self) -> Result<String, DataplaneError> {
        if let [only] = self.workers.as_slice() {
            return Ok(only.handle.exec(|g| g.to_dot())?);
        }
        let mut out = format!("digraph \"butterflyd\" {{\n{}", brick_core::DOT_STYLE);
        for (i, w) in self.workers.iter().enumerate() {
            out.push_str(&w.handle.exec(move |g| g.to_dot_cluster(&format!("w{i}")))?);
        }
        out.push_str("}\n");
        Ok(out)
    }

    /// Byte counters of a NIC's endpoint.
    pub fn counters(&self, id: &str) -> Option<NicCounters> {
        let n = self.nics.get(id)?;
        let west = n.endpoint_stats.side(Side::West);
        Some(NicCounters { from_vm_bytes: west.bytes_out.get(), to_vm_bytes: west.bytes_in.get() })
    }

    /// A BENCH NIC's figures; `None` for other NICs.
    pub fn bench_stats(&self, id: &str) -> Option<butterfly_api::BenchStats> {
        self.nics.get(id)?.bench.as_ref().map(|b| b.report())
    }

    /// The firewall's connection table of NIC `id`, as bytes (for live migration); `None`
    /// when the NIC has no firewall (bypass_filtering) or does not exist.
    pub fn export_connections(&self, id: &str) -> Result<Option<Vec<u8>>, DataplaneError> {
        let Some((fw, w)) = self.nics.get(id).and_then(|n| Some((n.firewall?, n.worker))) else {
            return Ok(None);
        };
        Ok(self.workers[w].handle.exec(move |g| {
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

    /// The brick standing for the VM of NIC `info`, and a BENCH NIC's handle.
    fn endpoint(
        &self,
        info: &NicInfo,
    ) -> Result<(Box<dyn Brick>, Option<crate::bench::BenchHandle>), DataplaneError> {
        let id = &info.spec.id;
        if info.spec.nic_type == NicType::Bench {
            let (brick, handle) = crate::bench::endpoint(info, &self.pool).map_err(|e| nic_err(id, e))?;
            return Ok((brick, Some(handle)));
        }
        self.vm_endpoint(info).map(|b| (b, None))
    }

    fn vm_endpoint(&self, info: &NicInfo) -> Result<Box<dyn Brick>, DataplaneError> {
        let id = &info.spec.id;
        let mac = info.spec.mac.octets();
        match info.spec.nic_type {
            NicType::VhostUserServer => {
                // A stale socket from a previous run is replaced by VhostUserNic::server, which
                // refuses to delete anything that is not a socket.
                let path = PathBuf::from(&info.path);
                // With offloads, the guest is offered TSO: its super-frames (up to 64 KiB, in
                // big buffers) cross the graph whole, like a TAP VM's.
                let pool = self.big_pool.clone().unwrap_or_else(|| self.pool.clone());
                let mut vcfg = VhostUserConfig::new(format!("vm-{id}"), mac, pool);
                vcfg.offloads = Offloads { csum: self.offload, tso: self.big_pool.is_some() };
                // The guest's MTU, offered with VIRTIO_NET_F_MTU.
                vcfg.mtu = self.vm_mtu;
                let nic = if info.spec.vhost_user_client {
                    // Client mode: QEMU serves the socket at the same path; the brick
                    // connects (at once, whether or not QEMU is there yet) and reconnects
                    // whenever the connection is lost, every 250 ms.
                    vcfg.reconnect_interval = std::time::Duration::from_millis(250);
                    VhostUserNic::client(&path, vcfg)
                } else {
                    VhostUserNic::server(&path, vcfg)
                };
                Ok(Box::new(nic.map_err(|e| nic_err(id, e))?))
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
                // Restoring: the device the previous process left (persistent, maybe moved
                // into the VM's namespace, with its addresses) is the VM's NIC: attach to it.
                let adopted = match self.restoring && self.persistent_taps {
                    true => self.adopt_tap(id, mac, cfg.clone(), pool.clone())?,
                    false => None,
                };
                let tap = match adopted {
                    Some(tap) => tap,
                    None => {
                        let tap = TapNic::create(id, cfg, pool).map_err(|e| nic_err(id, e))?;
                        // The interface is the VM's NIC: it sends with the NIC's MAC, which
                        // anti-spoof and the switch's static entry expect.
                        tap.set_mac(mac).map_err(|e| nic_err(id, e))?;
                        if let Some(m) = self.vm_mtu {
                            mtu::apply(id, NicMtu::Value(m)).map_err(|e| nic_err(id, e))?;
                        }
                        link_up(id)
                            .map_err(|source| DataplaneError::NicLink { id: id.to_string(), source })?;
                        tap
                    }
                };
                // With a state directory the NIC comes back at the next start, and so must
                // its device, wherever the VM is: it outlives this process (a graceful stop
                // or a crash); removing the NIC through the API removes it.
                if self.persistent_taps {
                    tap.set_persistent(true).map_err(|e| nic_err(id, e))?;
                }
                // A TAP brick faces east (a physical NIC); as a VM endpoint it must face west.
                Ok(Box::new(Flipped::new(tap)))
            }
            NicType::Bench => Err(nic_err(id, "internal: a BENCH NIC is no VM endpoint")),
        }
    }

    fn add_nic(&mut self, info: &NicInfo, rules: Option<CompiledRuleset>) -> Result<(), DataplaneError> {
        let id = info.spec.id.clone();
        let vni = info.spec.vni;
        let (endpoint, bench) = self.endpoint(info)?;
        let parts = NicParts {
            firewall: self.nic_firewall(info, rules),
            antispoof: nic_antispoof(info)?,
            sniffer: nic_sniffer(info)?,
            endpoint,
        };
        let sniffer_path = parts.sniffer.as_ref().map(|_| info.packet_trace_path.clone());
        let switch = match self.vnis.get(&vni) {
            Some(v) => SwitchOf::Existing(v.switch),
            None => SwitchOf::New(Box::new(self.new_switch().map_err(|e| nic_err(&id, e))?)),
        };
        let worker = self.owner(vni);
        let place = NicPlace {
            id: id.clone(),
            vni,
            vm_mac: info.spec.mac.octets(),
            vtep: self.workers[worker].vtep,
            bum: self.vni_options(vni),
            switch,
        };
        let added = self.workers[worker]
            .handle
            .exec(move |g| insert_nic(g, place, parts))?
            .map_err(|source| DataplaneError::NicGraph { id: id.clone(), source })?;
        if !self.vnis.contains_key(&vni) {
            self.generations += 1;
        }
        let generation = self.generations;
        self.vnis.entry(vni).or_insert(VniState { switch: added.switch, nics: 0, generation }).nics += 1;
        self.nics.insert(
            id,
            NicBricks {
                vni,
                worker,
                structure: Structure::of(info),
                firewall: added.firewall,
                antispoof: added.antispoof,
                sniffer: added.sniffer,
                sniffer_path,
                endpoint: added.endpoint,
                endpoint_stats: added.endpoint_stats,
                bench,
            },
        );
        Ok(())
    }

    /// A NIC's firewall (none when it bypasses filtering), with the connections of a pending
    /// import (`nic_import`) for it; the import's outcome is kept for the API's answer.
    fn nic_firewall(&mut self, info: &NicInfo, rules: Option<CompiledRuleset>) -> Option<Firewall> {
        let id = &info.spec.id;
        let mut fw = match (info.spec.bypass_filtering, rules) {
            (true, _) => return None,
            (false, Some(r)) => Firewall::with_ruleset(firewall_config(), r),
            (false, None) => Firewall::new(firewall_config()),
        };
        if let Some((_, table, now)) = self.pending_import.take_if(|(nic, _, _)| nic == id) {
            let r = if info.spec.ips.is_empty() {
                fw.import_connections(&table, now).map(|imported| ImportSummary { imported, skipped: 0 })
            } else {
                fw.import_connections_of(&table, now, &info.spec.ips)
            };
            self.import_result = Some((id.clone(), r));
        }
        Some(fw)
    }

    /// The switch of a VNI that has none yet.
    fn new_switch(&self) -> Result<Switch, brick_switch::SwitchError> {
        let sw = Switch::new(SwitchConfig::default(), self.pool.clone())?;
        // Flood copies of VMs' TSO super-frames need big buffers too.
        Ok(match &self.big_pool {
            Some(big) => sw.with_big_pool(big.clone()),
            None => sw,
        })
    }

    fn remove_nic(&mut self, id: &str) -> Result<(), DataplaneError> {
        // Removed for good (or to be rebuilt): a TAP device goes with its brick.
        let removed = self.take_nic(id, false)?;
        // Bricks are dropped here, on the control thread: tearing down a vhost-user backend
        // or closing a TAP takes milliseconds that the data plane must not wait for.
        drop(removed);
        Ok(())
    }

    /// Takes NIC `id`'s bricks out of the graph and returns them (to be dropped off the
    /// data-plane thread). A TAP device stays after its brick only with `keep_tap` (and
    /// persistent TAPs): the daemon is stopping and the next start takes it back.
    fn take_nic(&mut self, id: &str, keep_tap: bool) -> Result<Vec<Box<dyn Brick>>, DataplaneError> {
        let Some(n) = self.nics.remove(id) else { return Ok(Vec::new()) };
        let unpersist = n.structure.nic_type == NicType::Tap && self.persistent_taps && !keep_tap;
        let endpoint = n.endpoint;
        let last = self.vnis.get(&n.vni).is_some_and(|v| v.nics <= 1);
        let switch = self.vnis.get(&n.vni).map(|v| v.switch);
        let vtep = self.workers[n.worker].vtep;
        let vni = n.vni;
        let bricks: Vec<BrickId> =
            [Some(n.endpoint), n.sniffer, n.antispoof, n.firewall].into_iter().flatten().collect();
        let removed = self.workers[n.worker].handle.exec(move |g| {
            if unpersist {
                if let Ok(tap) = g.brick::<Flipped<TapNic>>(endpoint) {
                    let _ = tap.inner().set_persistent(false);
                }
            }
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
        let link_local = info.spec.link_local.clone();
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
        let new_sniffer_id = self.workers[cur.worker].handle.exec(
            move |g| -> Result<Option<Option<BrickId>>, GraphChangeError> {
                if let (Some(fw), Some(r)) = (c.firewall, rules) {
                    g.brick_mut::<Firewall>(fw)?.replace_ruleset(r);
                }
                if let Some(a) = c.antispoof {
                    let a = g.brick_mut::<AntiSpoof>(a)?;
                    a.set_ips(&ips)?;
                    a.set_link_local(&link_local)?;
                    a.set_options(opts);
                }
                let mut changed = None;
                if stop_trace || new_sniffer.is_some() {
                    if let Some(old) = c.sniffer {
                        // Dropping a sniffer only flushes a buffered file: cheap enough here.
                        g.remove(old)?;
                    } else {
                        g.unlink_between(prev, c.endpoint)?;
                    }
                    match new_sniffer {
                        Some(s) => {
                            let b = g.add(format!("sniff-{nid}"), s)?;
                            g.chain(&[prev, b, c.endpoint])?;
                            changed = Some(Some(b));
                        }
                        None => {
                            g.link(prev, c.endpoint)?;
                            changed = Some(None);
                        }
                    }
                }
                Ok(changed)
            },
        )?;
        let changed =
            new_sniffer_id.map_err(|source| DataplaneError::NicGraph { id: id.to_string(), source })?;
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
        // Its files are complete whatever happens to the rest.
        let _ = self.underlay_trace.stop();
        let ids: Vec<String> = self.nics.keys().cloned().collect();
        let mut removed = Vec::new();
        for id in ids {
            if let Ok(b) = self.take_nic(&id, true) {
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
        for w in &mut self.workers {
            if let Some(r) = w.runner.take() {
                let _ = r.stop();
            }
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Every NIC's firewall: with mid-stream TCP pickup, so that after a crash (no saved
/// tables) established sessions recover at their next segment in a direction the NIC's rules
/// allow.
fn firewall_config() -> FirewallConfig {
    FirewallConfig { tcp_pickup: true, ..FirewallConfig::default() }
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

#[cfg(test)]
mod tests {
    use super::worker_cpu;

    #[test]
    fn workers_take_the_next_allowed_cpus_and_wrap() {
        let allowed = brick_core::allowed_cpus().unwrap();
        let n = allowed.len();
        for i in 0..2 * n {
            assert_eq!(worker_cpu(allowed[0], i), allowed[i % n], "worker {i}");
        }
        assert_eq!(worker_cpu(allowed[n - 1], 1), allowed[0], "past the last allowed CPU: the first");
    }
}
