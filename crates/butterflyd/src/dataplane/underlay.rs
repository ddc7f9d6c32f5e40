//! The underlay and the workers: packet pools, the underlay device (TAP, AF_PACKET, DPDK or
//! none) opened with one brick per worker, each worker's graph (underlay, steer, VTEP) and
//! its thread.

use std::net::IpAddr;

use brick_core::{
    queue_pair, Brick, BrickId, Graph, LentBuffers, PacketPool, PoolConfig, Runner, RunnerConfig, Side,
};
use brick_nic::{AfPacketConfig, AfPacketNic, Fanout, FanoutMode, TapConfig, TapNic, TapOffloads};
use brick_vtep::{VniSteer, Vtep, VtepConfig};

use super::error::{DataplaneError, UnderlayError};
use super::Worker;
use crate::config::{Config, NicMtu, Underlay};
use crate::link::{link_mac, link_up};
use crate::mtu;

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
    let tap = open(TapConfig { queues, ..TapConfig::default() }, pool)
        .map_err(|source| UnderlayError::Tap { name: name.to_string(), source })?;
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
                .map_err(|source| UnderlayError::AfPacket { iface: iface.to_string(), source })?
                .with_big_pool(big.clone()),
        );
    }
    if workers > 1 {
        nics[0]
            .set_fanout_program(&brick_nic::bpf::vxlan_vni_fanout(udp_port))
            .map_err(|source| UnderlayError::Fanout { iface: iface.to_string(), source })?;
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

/// The packet pool of `workers` workers, and the pool of big buffers for super-frames
/// (TSO/GSO) when offloads are on.
pub(super) fn packet_pools(
    workers: usize,
    offload: bool,
) -> Result<(PacketPool, Option<PacketPool>), DataplaneError> {
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

/// What [`dpdk_underlay`] opened: the bricks and the port's MAC, the MTU `--nic-mtu` set, the
/// mbufs lent to vhost-user NICs, and whether the port computes UDP/TCP checksums.
type DpdkUnderside = (Underside, Option<u16>, LentBuffers, bool);

/// Opens the underlay: one brick per worker (none with `--underlay none`), the VTEPs' MAC
/// and tunnel GSO set in `vcfg`, and the MTU `--nic-mtu` gave the device, if it did.
pub(super) fn open_underside(
    cfg: &Config,
    n: usize,
    pool: &PacketPool,
    big_pool: Option<&PacketPool>,
    vcfg: &mut VtepConfig,
) -> Result<OpenedUnderside, DataplaneError> {
    let mut underlay_mtu = None;
    let mut lent = None;
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
            let ((nics, mac), mtu, mbufs, tx_csum) =
                dpdk_underlay(*port, &cfg.dpdk_args, n, pool.clone(), cfg.nic_mtu)?;
            underlay_mtu = mtu;
            lent = Some(mbufs);
            // The port sums an IPv6 underlay's outer UDP checksum (IPv4 sends 0).
            vcfg.outer_csum_offload = tx_csum;
            // Virtual devices (net_ring, net_null) have an all-zero MAC.
            (nics, if mac == [0; 6] { derived_mac(cfg.ip) } else { mac })
        }
        Underlay::None => (Vec::new(), derived_mac(cfg.ip)),
    };
    vcfg.local_mac = local_mac;
    Ok(OpenedUnderside { bricks: phys, mtu: underlay_mtu, lent })
}

/// What [`open_underside`] opened.
pub(super) struct OpenedUnderside {
    /// One underlay brick per worker (none with `--underlay none`).
    pub bricks: UnderlayBricks,
    /// The underlay's MTU, when `--nic-mtu` set it.
    pub mtu: Option<u16>,
    /// The DPDK port's mbufs, lent to vhost-user NICs: a VM's frame is copied once, straight
    /// into the mbuf the port sends.
    pub lent: Option<LentBuffers>,
}

/// A worker's graph before its thread starts, and its VTEP.
type WorkerGraph = (Graph, BrickId);

/// Where a worker's underlay brick sends what it receives: (worker, underlay, next brick).
type UnderlayHop = (usize, BrickId, BrickId);

/// The graphs of `n` workers: each its underlay brick (none with `--underlay none`), a
/// steer brick when there are several workers, and its VTEP; steer bricks joined by a queue
/// each way.
pub(super) fn worker_graphs(
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
pub(super) fn spawn_workers(cfg: &Config, graphs: Vec<WorkerGraph>) -> Result<Vec<Worker>, DataplaneError> {
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
) -> Result<DpdkUnderside, DataplaneError> {
    use brick_nic::{DpdkConfig, DpdkNic, Eal, PortSpec};
    let query = |source| UnderlayError::DpdkQuery { port, source };
    let words: Vec<&str> = args.split_whitespace().collect();
    let eal =
        Eal::init(&words).map_err(|source| UnderlayError::Eal { port, args: words.join(" "), source })?;
    // One queue pair per worker; the port's RSS spreads frames over them and the steer
    // bricks carry those of other workers' VNIs to their owner.
    let cfg = DpdkConfig { port: PortSpec::Id(port), queues: workers as u16, ..DpdkConfig::default() };
    let mut nic =
        DpdkNic::open(eal, cfg, pool).map_err(|source| UnderlayError::DpdkOpen { port, workers, source })?;
    let mac = nic.mac().map_err(query)?;
    let mtu = match want_mtu {
        None => None,
        Some(want) => {
            let mtu = match want {
                NicMtu::Value(v) => v,
                NicMtu::Max => {
                    let l = nic.mtu_limits().map_err(query)?;
                    mtu::dpdk_max_mtu(l.max_mtu, l.max_rx_pktlen)
                }
            };
            nic.set_mtu(mtu).map_err(|source| UnderlayError::DpdkMtu { port, mtu, want, source })?;
            Some(nic.mtu().map_err(query)?)
        }
    };
    let lent = nic.lent_buffers();
    let tx_csum = nic.offload_caps().tx_checksum();
    let bricks = if workers > 1 { nic.into_queues() } else { vec![nic] };
    Ok(((bricks.into_iter().map(|b| Box::new(b) as Box<dyn Brick>).collect(), mac), mtu, lent, tx_csum))
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_underlay(
    port: u16,
    _args: &str,
    _workers: usize,
    _pool: PacketPool,
    _want_mtu: Option<NicMtu>,
) -> Result<DpdkUnderside, DataplaneError> {
    // Config::from_cli already refuses this; kept as a clear error for library callers.
    Err(UnderlayError::NoDpdk { port }.into())
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
