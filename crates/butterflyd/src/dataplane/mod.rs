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
//! DPDK queue pair); a `steer` brick ([`VniSteer`](brick_vtep::VniSteer)) in front of each VTEP forwards the frames
//! that landed on the wrong worker through a queue to their owner and copies ARP/ND/IGMP to
//! every worker.
//!
//! With `--vhost-spread`, a vhost-user NIC's queue pairs are served by several workers: its
//! chain ends on a `spread-<id>` brick ([`VhostSpread`](brick_vhost::VhostSpread)) in front
//! of its own `vm-<id>` and of a queue link to each other thread's `vm-<id>/<t>`, in the
//! graphs of the least loaded other workers; the firewall and switch stay on its worker.
//!
//! Every change (a NIC added, removed or updated) is one closure run by the owning graph's
//! thread between two poll rounds: other NICs' traffic never stops, and a failed change is
//! rolled back before the closure returns.

mod error;
mod nic;
mod underlay;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use brick_core::{BrickId, GraphHandle, LentBuffers, PacketPool, Runner, Side};
use brick_firewall::{Firewall, ImportError, ImportSummary, Timestamp};
use brick_vtep::steer::owner_of;
use brick_vtep::{VniOptions, Vtep, VtepConfig};
use butterfly_api::BumMode;

use self::error::nic_err;
pub use self::error::DataplaneError;
use self::error::{GraphChangeError, NicError};
use self::nic::NicBricks;
use self::underlay::{open_underside, packet_pools, spawn_workers, worker_graphs, OpenedUnderside};
use crate::config::{Config, NicMtu};
use crate::mtu;
use crate::underlay_trace::{UnderlayLink, UnderlayTracer};

struct VniState {
    switch: BrickId,
    nics: usize,
    /// When its VTEP VNI was created (EVPN replays its remote state into a new one).
    generation: u64,
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
    /// The DPDK underlay's mbufs, lent to vhost-user NICs for their small frames.
    lent: Option<LentBuffers>,
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
    /// Queue pairs offered to vhost-user VMs.
    vhost_queue_pairs: u16,
    /// Each vhost-user NIC's pairs served by several workers (`--vhost-spread`).
    vhost_spread: bool,
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

impl Dataplane {
    /// Builds the underlay side (NIC + VTEP) of every worker and starts their threads.
    pub fn start(cfg: &Config) -> Result<Dataplane, DataplaneError> {
        let n = cfg.workers.max(1);
        let (pool, big_pool) = packet_pools(n, cfg.offload)?;
        let mut vcfg = VtepConfig::new(cfg.ip, [0; 6]);
        vcfg.gateway = cfg.gateway;
        vcfg.prefix_len = cfg.underlay_prefix;
        let OpenedUnderside { bricks: phys, mtu: underlay_mtu, lent } =
            open_underside(cfg, n, &pool, big_pool.as_ref(), &mut vcfg)?;
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
            lent,
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
            vhost_queue_pairs: cfg.vhost_queue_pairs,
            vhost_spread: cfg.vhost_spread,
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
        let Some(n) = self.nics.get(id) else { return Err(nic_err(id, NicError::NotInDataplane)) };
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
        // A spread NIC's threads each count their own queue pairs' frames.
        let sides = std::iter::once(&n.endpoint_stats).chain(n.siblings.iter().map(|s| &s.stats));
        Some(sides.map(|s| s.side(Side::West)).fold(NicCounters::default(), |c, west| NicCounters {
            from_vm_bytes: c.from_vm_bytes + west.bytes_out.get(),
            to_vm_bytes: c.to_vm_bytes + west.bytes_in.get(),
        }))
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
