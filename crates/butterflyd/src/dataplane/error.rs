//! What can fail in the data plane, one variant per failing step.

use crate::link::LinkError;
use crate::mtu::MtuError;
use crate::underlay_trace::TraceError;

/// A data-plane failure, with a message for the operator or the API client.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The underlay device could not be opened or configured.
    #[error(transparent)]
    Underlay(#[from] UnderlayError),
    /// A NIC's bricks could not be built or changed.
    #[error("NIC {id}: {source}")]
    Nic {
        /// NIC id.
        id: String,
        /// The step that failed.
        #[source]
        source: NicError,
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

/// Why the underlay device could not be opened or configured: one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum UnderlayError {
    /// The underlay TAP could not be created or attached to.
    #[error(
        "underlay tap {name}: {source} (creating a TAP needs root or CAP_NET_ADMIN; or use --underlay none)"
    )]
    Tap {
        /// The TAP's name.
        name: String,
        /// Why.
        #[source]
        source: brick_nic::NicError,
    },
    /// An AF_PACKET socket on the interface could not be opened.
    #[error("underlay af-packet {iface}: {source}")]
    AfPacket {
        /// The interface.
        iface: String,
        /// Why.
        #[source]
        source: brick_nic::NicError,
    },
    /// The workers' fanout program could not be attached to the AF_PACKET group.
    #[error("underlay af-packet {iface}: fanout program: {source}")]
    Fanout {
        /// The interface.
        iface: String,
        /// Why.
        #[source]
        source: brick_nic::NicError,
    },
    /// DPDK's EAL refused its arguments.
    #[cfg(feature = "dpdk")]
    #[error("underlay dpdk port {port}: EAL ({args}): {source}")]
    Eal {
        /// The port.
        port: u16,
        /// `--dpdk-args`.
        args: String,
        /// Why.
        #[source]
        source: brick_nic::DpdkError,
    },
    /// The DPDK port could not be opened with a queue pair per worker.
    #[cfg(feature = "dpdk")]
    #[error("underlay dpdk port {port}: {source} ({workers} worker(s))")]
    DpdkOpen {
        /// The port.
        port: u16,
        /// Queue pairs asked for.
        workers: usize,
        /// Why.
        #[source]
        source: brick_nic::NicError,
    },
    /// The DPDK port's MAC or MTU could not be read.
    #[cfg(feature = "dpdk")]
    #[error("underlay dpdk port {port}: {source}")]
    DpdkQuery {
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: brick_nic::DpdkError,
    },
    /// The DPDK port refused the MTU `--nic-mtu` asked for.
    #[cfg(feature = "dpdk")]
    #[error("underlay dpdk port {port}: refused MTU {mtu} (--nic-mtu {want}): {source}")]
    DpdkMtu {
        /// The port.
        port: u16,
        /// The MTU tried.
        mtu: u16,
        /// What `--nic-mtu` said.
        want: crate::config::NicMtu,
        /// Why.
        #[source]
        source: brick_nic::DpdkError,
    },
    /// A DPDK underlay in a daemon built without DPDK.
    #[cfg(not(feature = "dpdk"))]
    #[error("underlay dpdk port {port}: this butterflyd was built without the `dpdk` feature")]
    NoDpdk {
        /// The port.
        port: u16,
    },
}

/// `DataplaneError::Nic` of NIC `id`.
pub(super) fn nic_err(id: &str, source: impl Into<NicError>) -> DataplaneError {
    DataplaneError::Nic { id: id.to_string(), source: source.into() }
}

/// Why a NIC's bricks could not be built or changed: one variant per failing step.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    /// The API asked about a NIC the data plane does not have.
    #[error("not in the data plane")]
    NotInDataplane,
    /// The vhost-user brick could not be created (socket, backend).
    #[error(transparent)]
    Vhost(#[from] brick_vhost::VhostError),
    /// The TAP device could not be created, attached to or configured.
    #[error(transparent)]
    Tap(#[from] brick_nic::NicError),
    /// The TAP device could not get the VMs' MTU.
    #[error(transparent)]
    Mtu(#[from] MtuError),
    /// The kernel side of the TAP device could not be brought up.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Looking for a TAP device kept from the previous run in other namespaces failed.
    #[error("looking for its TAP device in other namespaces: {0}")]
    FindTap(#[source] std::io::Error),
    /// The TAP device kept from the previous run was found in another namespace but could
    /// not be attached to.
    #[error("attaching to its TAP device in the namespace of {}: {source}", netns.display())]
    AdoptTap {
        /// The namespace it is in.
        netns: std::path::PathBuf,
        /// Why.
        #[source]
        source: brick_nic::NicError,
    },
    /// Anti-spoofing was given more addresses than it holds.
    #[error(transparent)]
    AntiSpoof(#[from] brick_firewall::TooManyAddresses),
    /// The packet trace's file could not be opened.
    #[error("packet trace {path}: {source}")]
    Trace {
        /// The pcap file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The VNI's switch could not be created.
    #[error(transparent)]
    Switch(#[from] brick_switch::SwitchError),
    /// A BENCH NIC's endpoint could not be built.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    /// The queue between a spread vhost-user NIC's workers could not be made (no eventfd).
    #[error("queue to another worker (--vhost-spread): {0}")]
    SpreadQueue(#[source] std::io::Error),
    /// A BENCH NIC was asked for a VM endpoint: a bug in the caller.
    #[error("internal: a BENCH NIC is no VM endpoint")]
    BenchNotVm,
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
