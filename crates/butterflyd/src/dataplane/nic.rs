//! A NIC's bricks: its endpoint (vhost-user, TAP or BENCH), firewall, anti-spoofing and
//! packet trace, built off the data-plane thread, put into its worker's graph behind its
//! VNI's switch in one change (rolled back if any step fails), updated and taken out.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use brick_core::bricks::{Flipped, Sniffer, SnifferDirection};
use brick_core::{queue_link, Brick, BrickId, BrickStats, Graph, PacketPool, QueueLink, Side};
use brick_firewall::{AntiSpoof, AntiSpoofOptions, CompiledRuleset, Firewall, FirewallConfig, ImportSummary};
use brick_nic::{TapConfig, TapNic, TapOffloads};
use brick_switch::{Switch, SwitchConfig};
use brick_vhost::{Offloads, VhostSpread, VhostUserConfig, VhostUserNic};
use brick_vtep::{VniOptions, Vtep};
use butterfly_api::{NicInfo, NicType};

use super::error::{nic_err, DataplaneError, GraphChangeError, NicError};
use super::{Dataplane, VniState};
use crate::config::NicMtu;
use crate::link::link_up;
use crate::mtu;

/// What the daemon keeps about the bricks of one NIC.
#[derive(Debug, Clone)]
pub(super) struct NicBricks {
    pub(super) vni: u32,
    pub(super) worker: usize,
    structure: Structure,
    pub(super) firewall: Option<BrickId>,
    pub(super) antispoof: Option<BrickId>,
    pub(super) sniffer: Option<BrickId>,
    pub(super) sniffer_path: Option<String>,
    pub(super) endpoint: BrickId,
    pub(super) endpoint_stats: Arc<BrickStats>,
    /// The brick the NIC's chain ends on: its spread brick (`--vhost-spread`), or the endpoint.
    front: BrickId,
    /// The spread brick and its queue links, in the NIC's worker's graph.
    spread: Vec<BrickId>,
    /// The bricks of its other threads, in other workers' graphs (`--vhost-spread`).
    pub(super) siblings: Vec<SiblingBricks>,
    /// A BENCH NIC's role and figures.
    pub(super) bench: Option<crate::bench::BenchHandle>,
}

/// A spread vhost-user NIC's bricks in another worker's graph: thread `t`'s brick and its
/// end of the queue link to the NIC's worker.
#[derive(Debug, Clone)]
pub(super) struct SiblingBricks {
    worker: usize,
    bricks: Vec<BrickId>,
    pub(super) stats: Arc<BrickStats>,
}

/// Bursts in flight on each queue between a spread NIC's workers, each way.
const SPREAD_QUEUE_BURSTS: usize = 64;

/// A vhost-user NIC served by several workers (`--vhost-spread`), built: the spread brick
/// and the queue links for the NIC's worker's graph, and for each other thread its worker,
/// its brick and its end of the link.
struct SpreadParts {
    spread: VhostSpread,
    owner_links: Vec<QueueLink>,
    siblings: Vec<(usize, VhostUserNic, QueueLink)>,
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

/// Ids of a NIC's bricks once added to its worker's graph.
struct AddedNic {
    switch: BrickId,
    firewall: Option<BrickId>,
    antispoof: Option<BrickId>,
    sniffer: Option<BrickId>,
    endpoint: BrickId,
    endpoint_stats: Arc<BrickStats>,
    front: BrickId,
    spread: Vec<BrickId>,
    /// Its trace's file, set once the graph change returned.
    sniffer_path: Option<String>,
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
    Sniffer::to_file(&info.packet_trace_path, SnifferDirection::Both).map(Some).map_err(|source| {
        nic_err(&info.spec.id, NicError::Trace { path: info.packet_trace_path.clone(), source })
    })
}

/// The bricks of a NIC, built before they go into its worker's graph.
struct NicParts {
    firewall: Option<Firewall>,
    antispoof: Option<AntiSpoof>,
    sniffer: Option<Sniffer>,
    endpoint: Box<dyn Brick>,
    /// The spread brick and its queue links (`--vhost-spread`).
    spread: Option<(VhostSpread, Vec<QueueLink>)>,
}

/// What stands for a NIC's VM, built.
struct Endpoint {
    brick: Box<dyn Brick>,
    bench: Option<crate::bench::BenchHandle>,
    spread: Option<SpreadParts>,
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
/// anti-spoofing → trace → endpoint; on failure, removes what it added and returns those
/// bricks, to be dropped off the data-plane thread (a vhost-user brick joins its control
/// thread when dropped).
fn insert_nic(
    g: &mut Graph,
    place: NicPlace,
    parts: NicParts,
) -> (Result<AddedNic, GraphChangeError>, Vec<Box<dyn Brick>>) {
    let new_vni = matches!(place.switch, SwitchOf::New(_));
    let (vni, vtep) = (place.vni, place.vtep);
    let mut added: Vec<BrickId> = Vec::new();
    let result = link_nic(g, place, parts, &mut added);
    let mut removed = Vec::new();
    if result.is_err() {
        // Roll back: the graph is as it was before this NIC.
        if new_vni {
            let _ = g.brick_mut::<Vtep>(vtep).map(|v| v.remove_vni(vni));
        }
        removed.extend(added.into_iter().rev().filter_map(|b| g.remove(b).ok()));
    }
    (result, removed)
}

/// The steps of [`insert_nic`], each brick recorded in `added` as it joins.
fn link_nic(
    g: &mut Graph,
    place: NicPlace,
    parts: NicParts,
    added: &mut Vec<BrickId>,
) -> Result<AddedNic, GraphChangeError> {
    let NicPlace { id, vni, vm_mac, vtep, bum, switch } = place;
    // The endpoint first: should a later step fail, it leaves in the rollback's bricks.
    let endpoint = g.add_boxed(format!("vm-{id}"), parts.endpoint)?;
    added.push(endpoint);
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
    let mut spread = Vec::new();
    if let Some((brick, links)) = parts.spread {
        // Thread 0's brick on east port 0, the link to thread t's on port t.
        let s = add(g, format!("spread-{id}"), Box::new(brick))?;
        spread.push(s);
        let ends = std::iter::once(endpoint);
        let links = links
            .into_iter()
            .enumerate()
            .map(|(k, l)| add(g, format!("q-vm-{id}/{}", k + 1), Box::new(l)))
            .collect::<Result<Vec<_>, _>>()?;
        for (t, b) in ends.chain(links.iter().copied()).enumerate() {
            let (port, _) = g.link(s, b)?;
            g.brick_mut::<VhostSpread>(s)?.set_thread_port(t, port);
        }
        spread.extend(links);
    }
    let front = spread.first().copied().unwrap_or(endpoint);
    let chain: Vec<BrickId> = [firewall, antispoof, sniffer, Some(front)].into_iter().flatten().collect();
    let (switch_port, _) = g.link(switch, chain[0])?;
    g.chain(&chain)?;
    // The VM's MAC is pinned to its port: a frame from the wire (or another VM) with that
    // source cannot move it and draw the VM's traffic away. Unlinking the port forgets it.
    g.brick_mut::<Switch>(switch)?.add_static(vm_mac, Side::East, switch_port)?;
    Ok(AddedNic {
        switch,
        firewall,
        antispoof,
        sniffer,
        endpoint,
        endpoint_stats: g.stats(endpoint)?,
        front,
        spread,
        sniffer_path: None,
    })
}

/// The workers for a spread NIC's `count` other threads, given each worker's `load` (the
/// bricks it serves) and the NIC's worker `owner`: the least loaded others, each once,
/// nearest after the owner on a tie. `count` is below the number of workers.
fn sibling_workers(load: &[usize], owner: usize, count: usize) -> Vec<usize> {
    let n = load.len();
    let mut others: Vec<usize> = (1..n).map(|k| (owner + k) % n).collect();
    // Stable: on equal load, the order after the owner stays.
    others.sort_by_key(|&w| load[w]);
    others.truncate(count);
    others
}

/// Adds thread `t`'s brick of spread NIC `id`, behind its end of the queue link to the NIC's
/// worker, to another worker's graph `g`; on failure, removes what it added.
fn insert_sibling(
    g: &mut Graph,
    id: &str,
    t: usize,
    nic: VhostUserNic,
    end: QueueLink,
) -> Result<(Vec<BrickId>, Arc<BrickStats>), GraphChangeError> {
    let mut added = Vec::new();
    let result = (|| {
        let l = g.add(format!("q-vm-{id}/{t}"), end)?;
        added.push(l);
        let v = g.add(format!("vm-{id}/{t}"), nic)?;
        added.push(v);
        g.link(l, v)?;
        Ok((vec![v, l], g.stats(v)?))
    })();
    if result.is_err() {
        for b in added.into_iter().rev() {
            let _ = g.remove(b);
        }
    }
    result
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

impl Dataplane {
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
            link_up(id).map_err(|e| nic_err(id, e))?;
            tracing::info!("NIC {id}: attached to its TAP device, kept from the previous run");
            return Ok(Some(tap));
        }
        let Some((path, netns)) =
            brick_nic::netns::find_interface(id, mac).map_err(|e| nic_err(id, NicError::FindTap(e)))?
        else {
            return Ok(None);
        };
        let tap = TapNic::attach_in(std::os::fd::AsFd::as_fd(&netns), id, cfg, pool)
            .map_err(|source| nic_err(id, NicError::AdoptTap { netns: path.clone(), source }))?;
        tracing::info!(
            "NIC {id}: attached to its TAP device, kept from the previous run in the namespace of {}",
            path.display()
        );
        Ok(Some(tap))
    }

    /// The brick standing for the VM of NIC `info`, a BENCH NIC's handle, and a spread
    /// vhost-user NIC's other parts.
    fn endpoint(&self, info: &NicInfo) -> Result<Endpoint, DataplaneError> {
        let id = &info.spec.id;
        if info.spec.nic_type == NicType::Bench {
            let (brick, handle) = crate::bench::endpoint(info, &self.pool).map_err(|e| nic_err(id, e))?;
            return Ok(Endpoint { brick, bench: Some(handle), spread: None });
        }
        let (brick, spread) = self.vm_endpoint(info)?;
        Ok(Endpoint { brick, bench: None, spread })
    }

    /// Graph threads serving each vhost-user NIC: one, or with `--vhost-spread` one per
    /// queue pair up to the workers.
    fn vhost_threads(&self) -> u16 {
        match self.vhost_spread {
            true => self.vhost_queue_pairs.min(self.workers.len() as u16).max(1),
            false => 1,
        }
    }

    /// The spread brick, queue links and other threads' bricks of a vhost-user NIC served
    /// by several threads; `None` with one.
    fn spread_of(&self, id: &str, nic: &mut VhostUserNic) -> Result<Option<SpreadParts>, DataplaneError> {
        let siblings = nic.take_siblings().map_err(|e| nic_err(id, e))?;
        if siblings.is_empty() {
            return Ok(None);
        }
        let mut parts = SpreadParts {
            spread: VhostSpread::new(nic.rx_threads()),
            owner_links: Vec::new(),
            siblings: Vec::new(),
        };
        for (k, sibling) in siblings.into_iter().enumerate() {
            let (owner_end, sibling_end) = queue_link(SPREAD_QUEUE_BURSTS, Side::West)
                .map_err(|e| nic_err(id, NicError::SpreadQueue(e)))?;
            parts.owner_links.push(owner_end);
            parts.siblings.push((k + 1, sibling, sibling_end));
        }
        Ok(Some(parts))
    }

    fn vm_endpoint(&self, info: &NicInfo) -> Result<(Box<dyn Brick>, Option<SpreadParts>), DataplaneError> {
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
                // Small frames in small buffers: a 64-byte frame per 64 KiB buffer cycles
                // all the big pool's few hundred buffers, cold, through its shared queue.
                vcfg.small_pool = self.big_pool.as_ref().map(|_| self.pool.clone());
                // The guest's MTU, offered with VIRTIO_NET_F_MTU.
                vcfg.mtu = self.vm_mtu;
                vcfg.queue_pairs = self.vhost_queue_pairs;
                vcfg.threads = self.vhost_threads();
                // With a DPDK underlay, small frames go straight into the port's mbufs.
                vcfg.lent = self.lent.clone();
                let nic = if info.spec.vhost_user_client {
                    // Client mode: QEMU serves the socket at the same path; the brick
                    // connects (at once, whether or not QEMU is there yet) and reconnects
                    // whenever the connection is lost, every 250 ms.
                    vcfg.reconnect_interval = std::time::Duration::from_millis(250);
                    VhostUserNic::client(&path, vcfg)
                } else {
                    VhostUserNic::server(&path, vcfg)
                };
                let mut nic = nic.map_err(|e| nic_err(id, e))?;
                let spread = self.spread_of(id, &mut nic)?;
                Ok((Box::new(nic), spread))
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
                        link_up(id).map_err(|e| nic_err(id, e))?;
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
                Ok((Box::new(Flipped::new(tap)), None))
            }
            NicType::Bench => Err(nic_err(id, NicError::BenchNotVm)),
        }
    }

    fn add_nic(&mut self, info: &NicInfo, rules: Option<CompiledRuleset>) -> Result<(), DataplaneError> {
        let id = info.spec.id.clone();
        let vni = info.spec.vni;
        let Endpoint { brick: endpoint, bench, spread } = self.endpoint(info)?;
        let worker = self.owner(vni);
        // A spread NIC's other threads first: they get frames only once its spread brick
        // links to them.
        let (spread, siblings) = match spread {
            Some(p) => (Some((p.spread, p.owner_links)), self.insert_siblings(&id, worker, p.siblings)?),
            None => (None, Vec::new()),
        };
        let added = self.insert_owned(info, rules, endpoint, spread, worker);
        let added = match added {
            Ok(a) => a,
            Err(e) => {
                drop(self.remove_siblings(&siblings));
                return Err(e);
            }
        };
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
                sniffer_path: added.sniffer_path,
                endpoint: added.endpoint,
                endpoint_stats: added.endpoint_stats,
                front: added.front,
                spread: added.spread,
                siblings,
                bench,
            },
        );
        Ok(())
    }

    /// Builds NIC `info`'s firewall, anti-spoofing and trace and puts them, with its
    /// endpoint (and spread brick), into the graph of its worker `worker`.
    fn insert_owned(
        &mut self,
        info: &NicInfo,
        rules: Option<CompiledRuleset>,
        endpoint: Box<dyn Brick>,
        spread: Option<(VhostSpread, Vec<QueueLink>)>,
        worker: usize,
    ) -> Result<AddedNic, DataplaneError> {
        let id = info.spec.id.clone();
        let vni = info.spec.vni;
        let parts = NicParts {
            firewall: self.nic_firewall(info, rules),
            antispoof: nic_antispoof(info)?,
            sniffer: nic_sniffer(info)?,
            endpoint,
            spread,
        };
        let sniffer_path = parts.sniffer.as_ref().map(|_| info.packet_trace_path.clone());
        let switch = match self.vnis.get(&vni) {
            Some(v) => SwitchOf::Existing(v.switch),
            None => SwitchOf::New(Box::new(self.new_switch().map_err(|e| nic_err(&id, e))?)),
        };
        let place = NicPlace {
            id: id.clone(),
            vni,
            vm_mac: info.spec.mac.octets(),
            vtep: self.workers[worker].vtep,
            bum: self.vni_options(vni),
            switch,
        };
        let (added, removed) = self.workers[worker].handle.exec(move |g| insert_nic(g, place, parts))?;
        drop(removed);
        let mut added = added.map_err(|source| DataplaneError::NicGraph { id: id.clone(), source })?;
        added.sniffer_path = sniffer_path;
        Ok(added)
    }

    /// Puts a spread NIC's other threads' bricks into the graphs of the least loaded other
    /// workers; on failure, takes out those already in.
    fn insert_siblings(
        &self,
        id: &str,
        owner: usize,
        siblings: Vec<(usize, VhostUserNic, QueueLink)>,
    ) -> Result<Vec<SiblingBricks>, DataplaneError> {
        let mut placed = Vec::new();
        let workers = sibling_workers(&self.endpoints_per_worker(), owner, siblings.len());
        for ((t, nic, end), worker) in siblings.into_iter().zip(workers) {
            let nid = id.to_string();
            let r = self.workers[worker].handle.exec(move |g| insert_sibling(g, &nid, t, nic, end));
            let err = match r {
                Ok(Ok((bricks, stats))) => {
                    placed.push(SiblingBricks { worker, bricks, stats });
                    continue;
                }
                Ok(Err(source)) => DataplaneError::NicGraph { id: id.to_string(), source },
                Err(e) => e.into(),
            };
            drop(self.remove_siblings(&placed));
            return Err(err);
        }
        Ok(placed)
    }

    /// How many VM endpoints each worker serves: NICs' own, and spread NICs' other threads.
    fn endpoints_per_worker(&self) -> Vec<usize> {
        let mut load = vec![0; self.workers.len()];
        for n in self.nics.values() {
            load[n.worker] += 1;
            for s in &n.siblings {
                load[s.worker] += 1;
            }
        }
        load
    }

    /// Takes a spread NIC's other threads' bricks out of their workers' graphs, to be
    /// dropped off the data-plane threads.
    fn remove_siblings(&self, siblings: &[SiblingBricks]) -> Vec<Box<dyn Brick>> {
        let mut removed = Vec::new();
        for s in siblings {
            let bricks = s.bricks.clone();
            match self.workers[s.worker]
                .handle
                .exec(move |g| bricks.into_iter().filter_map(|b| g.remove(b).ok()).collect::<Vec<_>>())
            {
                Ok(b) => removed.extend(b),
                Err(e) => tracing::warn!("worker {}: taking a spread NIC's thread out: {e}", s.worker),
            }
        }
        removed
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
    pub(super) fn take_nic(
        &mut self,
        id: &str,
        keep_tap: bool,
    ) -> Result<Vec<Box<dyn Brick>>, DataplaneError> {
        let Some(n) = self.nics.remove(id) else { return Ok(Vec::new()) };
        let unpersist = n.structure.nic_type == NicType::Tap && self.persistent_taps && !keep_tap;
        let endpoint = n.endpoint;
        let last = self.vnis.get(&n.vni).is_some_and(|v| v.nics <= 1);
        let switch = self.vnis.get(&n.vni).map(|v| v.switch);
        let vtep = self.workers[n.worker].vtep;
        let vni = n.vni;
        let bricks: Vec<BrickId> = [Some(n.endpoint), n.sniffer, n.antispoof, n.firewall]
            .into_iter()
            .flatten()
            .chain(n.spread.iter().copied())
            .collect();
        let owned = self.workers[n.worker].handle.exec(move |g| {
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
        });
        // Then its other threads' bricks, which nothing sends to any more (taken out even
        // when the NIC's own worker did not answer).
        let siblings = self.remove_siblings(&n.siblings);
        let mut removed = owned?;
        removed.extend(siblings);
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
        let Some(cur) = self.nics.get(id).cloned() else { return Err(nic_err(id, NicError::NotInDataplane)) };
        let ips = info.spec.ips.clone();
        let link_local = info.spec.link_local.clone();
        let opts = antispoof_options(info.spec.ip_anti_spoof);
        let want_trace = info.packet_trace.then(|| info.packet_trace_path.clone());
        let new_sniffer = match &want_trace {
            Some(path) if cur.sniffer_path.as_deref() != Some(path.as_str()) => Some(
                Sniffer::to_file(path, SnifferDirection::Both)
                    .map_err(|source| nic_err(id, NicError::Trace { path: path.clone(), source }))?,
            ),
            _ => None,
        };
        let stop_trace = want_trace.is_none() && cur.sniffer.is_some();
        // A bypass NIC's trace sits right behind the switch: relinking gives the NIC a new
        // switch port, which must pin the VM's MAC again.
        let behind = cur.antispoof.or(cur.firewall);
        let prev = behind.unwrap_or_else(|| self.vnis[&cur.vni].switch);
        let pin = behind.is_none().then_some(cur.structure.mac);
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
                        g.unlink_between(prev, c.front)?;
                    }
                    let (port, _) = match new_sniffer {
                        Some(s) => {
                            let b = g.add(format!("sniff-{nid}"), s)?;
                            changed = Some(Some(b));
                            let l = g.link(prev, b)?;
                            g.link(b, c.front)?;
                            l
                        }
                        None => {
                            changed = Some(None);
                            g.link(prev, c.front)?
                        }
                    };
                    if let Some(mac) = pin {
                        g.brick_mut::<Switch>(prev)?.add_static(mac, Side::East, port)?;
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
}

#[cfg(test)]
mod tests {
    use super::sibling_workers;

    /// A spread NIC's other threads go to the least loaded other workers, never its own,
    /// each worker once.
    #[test]
    fn siblings_go_to_the_least_loaded_other_workers() {
        assert_eq!(sibling_workers(&[0, 0], 0, 1), [1]);
        assert_eq!(sibling_workers(&[0, 0], 1, 1), [0]);
        // Four workers, owner 0: after 1 and 2 have NICs, worker 3 takes the next.
        assert_eq!(sibling_workers(&[3, 1, 1, 0], 0, 1), [3]);
        assert_eq!(sibling_workers(&[3, 1, 1, 0], 0, 3), [3, 1, 2]);
        // Ties: nearest after the owner, wrapping.
        assert_eq!(sibling_workers(&[1, 1, 5, 1], 2, 2), [3, 0]);
        // However loaded, never the owner.
        assert_eq!(sibling_workers(&[0, 9, 9], 0, 2), [1, 2]);
    }
}
