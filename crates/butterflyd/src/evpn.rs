//! BGP EVPN with FRR: the agent thread that keeps the kernel mirror of the EVPN VNIs (in
//! the namespace where FRR runs) in line with the local NICs, and the data plane in line with
//! what FRR installs there. See `butterfly-evpn` for the mirror, and docs/architecture.md
//! ("EVPN") for the design.
//!
//! ```text
//!  API ─ Daemon ──Desired──▶ agent ──rtnetlink──▶ mirror (bfbrN, bfvxN, bfapN) ◀── zebra ◀── bgpd ◀── BGP
//!                              │  ◀── FDB / neighbour events (remote MACs, flood VTEPs) ──┘
//!                              └──Ops──▶ each worker's VTEP (static MACs, flood list, MAC+IP
//!                                        bindings for ARP/ND suppression), between poll rounds
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use brick_core::{BrickId, GraphHandle};
use brick_vtep::steer::owner_of;
use brick_vtep::{Vtep, VtepError};
use butterfly_evpn::kernel::{Links, Role, Seen};
use butterfly_evpn::mirror::{Events, Mirror, MirrorError, Read};
use butterfly_evpn::reconcile::{Op, Policy, Reconciler};
use butterfly_evpn::Mac;
use tracing::{debug, info, warn};

use crate::config::EvpnConfig;

/// Which VNIs are in EVPN mode: the daemon's default and the VNIs' own settings. Shared
/// between the API thread (which changes it before its own graph commands) and the agent's
/// graph commands (which set flood lists of EVPN VNIs only), so the two never undo each other.
#[derive(Debug)]
pub struct Modes {
    default: bool,
    own: Mutex<HashMap<u32, bool>>,
}

impl Modes {
    /// `default`: VNIs without a setting of their own are in EVPN mode.
    pub fn new(default: bool) -> Modes {
        Modes { default, own: Mutex::new(HashMap::new()) }
    }

    fn own(&self) -> std::sync::MutexGuard<'_, HashMap<u32, bool>> {
        self.own.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `vni` is in EVPN mode.
    pub fn is_evpn(&self, vni: u32) -> bool {
        self.own().get(&vni).copied().unwrap_or(self.default)
    }

    /// Records `vni`'s own setting (`Some(true)`: EVPN), or forgets it.
    pub fn set(&self, vni: u32, evpn: Option<bool>) {
        match evpn {
            Some(e) => self.own().insert(vni, e),
            None => self.own().remove(&vni),
        };
    }

    /// Whether any VNI may be in EVPN mode.
    pub fn any(&self) -> bool {
        self.default || self.own().values().any(|&e| e)
    }
}

/// The agent's way to the data plane: every worker's graph and VTEP.
#[derive(Clone)]
pub struct Plane {
    workers: Vec<(GraphHandle, BrickId)>,
    modes: Arc<Modes>,
}

impl Plane {
    /// A plane over `workers` (graph, VTEP), worker `i` owning VNIs `v % n == i`.
    pub fn new(workers: Vec<(GraphHandle, BrickId)>, modes: Arc<Modes>) -> Plane {
        Plane { workers, modes }
    }

    /// Applies `ops`, one graph command per worker. A VNI not in the VTEP (no NIC here yet)
    /// is skipped: its state is replayed when its VTEP VNI is created. Returns how many
    /// operations the VTEPs refused (a full table, an address of the wrong family).
    pub fn apply(&self, ops: Vec<Op>) -> usize {
        if self.workers.is_empty() || ops.is_empty() {
            return 0;
        }
        let n = self.workers.len();
        let mut per: Vec<Vec<Op>> = vec![Vec::new(); n];
        for op in ops {
            let vni = match &op {
                Op::SetMac { vni, .. }
                | Op::DelMac { vni, .. }
                | Op::SetFlood { vni, .. }
                | Op::SetIp { vni, .. }
                | Op::DelIp { vni, .. } => *vni,
            };
            per[owner_of(vni, n)].push(op);
        }
        let mut refused = 0;
        for (i, ops) in per.into_iter().enumerate() {
            if ops.is_empty() {
                continue;
            }
            let (handle, vtep) = (&self.workers[i].0, self.workers[i].1);
            let modes = Arc::clone(&self.modes);
            let r = handle.exec(move |g| {
                let Ok(v) = g.brick_mut::<Vtep>(vtep) else { return 0 };
                let mut refused = 0;
                for op in ops {
                    let r = match op {
                        Op::SetMac { vni, mac, vtep } => v.add_static_mac(vni, mac, vtep),
                        Op::DelMac { vni, mac } => v.remove_mac(vni, mac).map(|_| ()),
                        Op::SetFlood { vni, flood } if modes.is_evpn(vni) => v.set_flood(vni, &flood),
                        // Remote MAC+IP bindings: the VTEP answers local VMs' ARP/ND for them.
                        Op::SetIp { vni, ip, mac } if modes.is_evpn(vni) => v.set_neigh_proxy(vni, ip, mac),
                        Op::DelIp { vni, ip } => v.remove_neigh_proxy(vni, ip).map(|_| ()),
                        Op::SetFlood { .. } | Op::SetIp { .. } => Ok(()),
                    };
                    match r {
                        Ok(()) | Err(VtepError::UnknownVni(_)) => {}
                        Err(_) => refused += 1,
                    }
                }
                refused
            });
            match r {
                Ok(n) => refused += n,
                Err(e) => warn!("EVPN: data plane worker {i}: {e}"),
            }
        }
        refused
    }
}

/// One EVPN VNI with NICs here, as the agent must mirror it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredVni {
    /// Generation of its VTEP VNI (a new one gets the remote state replayed).
    pub generation: u64,
    /// Local MACs and each one's IPs.
    pub macs: BTreeMap<Mac, BTreeSet<IpAddr>>,
}

/// Every EVPN VNI with NICs here.
pub type Desired = BTreeMap<u32, DesiredVni>;

/// Whether FRR runs: zebra's and bgpd's pid files in its run directory name live processes
/// of those names. Their pids change when FRR restarts.
fn frr_pids(dir: &Path) -> Option<(u32, u32)> {
    let pid = |daemon: &str| -> Option<u32> {
        let text = std::fs::read_to_string(dir.join(format!("{daemon}.pid"))).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        proc_alive(pid, daemon).then_some(pid)
    };
    Some((pid("zebra")?, pid("bgpd")?))
}

/// Whether process `pid` is named `name` and alive (a zombie, killed but not reaped, is not).
fn proc_alive(pid: u32, name: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // "pid (comm) state ...": comm may hold spaces or parentheses, the state follows the last ')'.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { return false };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].trim_start().chars().next();
    comm == name && !matches!(state, Some('Z' | 'X' | 'x'))
}

/// Why the EVPN agent could not start or keep the mirror in step.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A netlink operation on the mirror namespace failed.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// The agent's thread could not be started.
    #[error("EVPN thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The devices of a VNI just created in the mirror are not there.
    #[error("VNI {0}: mirror devices missing")]
    DevicesMissing(u32),
}

/// The running agent.
pub struct Agent {
    tx: Sender<Desired>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Agent {
    /// Opens the mirror in the configured namespace (created if missing) and starts the
    /// agent thread. `local` is this host's VTEP address (the mirror's VXLAN `local`).
    pub fn start(cfg: &EvpnConfig, local: IpAddr, plane: Plane) -> Result<Agent, AgentError> {
        let mirror = Mirror::open(&cfg.netns)?;
        let events = Events::open(&cfg.netns)?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let policy = Policy { grace: cfg.grace, ..Policy::default() };
        let mut st = State {
            mirror,
            events,
            links: Links::new(),
            written: BTreeMap::new(),
            rec: Reconciler::new(policy),
            plane,
            local,
            frr_dir: cfg.frr_dir.clone(),
            frr: None,
            desired: Desired::new(),
            dirty: true,
            retry: None,
        };
        st.startup();
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("evpn".into())
            .spawn(move || st.run(&rx, &stop2))
            .map_err(AgentError::Thread)?;
        info!(
            "EVPN: mirroring VNIs in namespace {} (FRR's run directory {})",
            cfg.netns,
            cfg.frr_dir.display()
        );
        if local.is_ipv6() {
            // FRR 8.4's zebra reads the mirror's IPv6 `local` as VTEP 0.0.0.0 and bgpd then
            // advertises its router-id as the next hop: IPv6 VTEPs need FRR 10.6 or later.
            warn!("EVPN: VTEP address {local} is IPv6: FRR supports IPv6 VTEPs from version 10.6 only");
        }
        Ok(Agent { tx, stop, thread: Some(thread) })
    }

    /// Hands over the EVPN VNIs as they are now.
    pub fn update(&self, desired: Desired) {
        let _ = self.tx.send(desired);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the agent wrote in the mirror for one VNI.
#[derive(Debug, Default)]
struct Written {
    generation: Option<u64>,
    macs: BTreeMap<Mac, BTreeSet<IpAddr>>,
}

struct State {
    mirror: Mirror,
    events: Events,
    links: Links,
    written: BTreeMap<u32, Written>,
    rec: Reconciler,
    plane: Plane,
    local: IpAddr,
    frr_dir: PathBuf,
    frr: Option<(u32, u32)>,
    desired: Desired,
    /// The mirror's local entries may differ from `desired`.
    dirty: bool,
    /// When to try a failed mirror change again.
    retry: Option<Instant>,
}

impl State {
    /// Reads what the mirror holds (after a restart of butterflyd, or lost events): our own
    /// entries, and what zebra installed.
    fn startup(&mut self) {
        let now = Instant::now();
        self.frr = frr_pids(&self.frr_dir);
        match self.frr {
            // Running before us: nothing of ours to wait for.
            Some(_) => self.rec.set_frr(now.checked_sub(self.rec.policy().grace + Duration::from_secs(1))),
            None => warn!(
                "EVPN: FRR is not running (no live zebra.pid and bgpd.pid in {}): routes are not \
                 learnt, and none is removed from the data plane, until it runs",
                self.frr_dir.display()
            ),
        }
        if let Err(e) = self.resync(true) {
            warn!("EVPN: reading the mirror: {e}");
            self.retry = Some(now + Duration::from_secs(1));
        }
    }

    /// Dumps the mirror: devices, our entries (`ours`: at start only) and zebra's.
    fn resync(&mut self, ours: bool) -> Result<(), AgentError> {
        let vnis = self.mirror.vnis()?;
        for (vni, local) in &vnis {
            if *local != Some(self.local) {
                // Left by a butterflyd with another VTEP address: rebuilt when needed.
                self.mirror.remove_vni(*vni)?;
            } else if ours {
                self.written.entry(*vni).or_default();
            }
        }
        self.links = self.mirror.links()?;
        let seen = self.mirror.dump(&self.links)?;
        let mut remote = Vec::new();
        for s in seen {
            match s {
                Seen::Remote(butterfly_evpn::kernel::Change::Add(e)) => remote.push(e),
                Seen::Local(butterfly_evpn::kernel::Local::Mac { vni, mac }, true) if ours => {
                    if let Some(w) = self.written.get_mut(&vni) {
                        w.macs.entry(mac).or_default();
                    }
                }
                Seen::Local(butterfly_evpn::kernel::Local::Ip { vni, ip, mac }, true) if ours => {
                    if let Some(w) = self.written.get_mut(&vni) {
                        w.macs.entry(mac).or_default().insert(ip);
                    }
                }
                _ => {}
            }
        }
        let mirrored: BTreeSet<u32> = self.links.values().map(|&(v, _)| v).collect();
        self.rec.reset(&mirrored, remote);
        self.dirty = true;
        Ok(())
    }

    fn run(mut self, rx: &Receiver<Desired>, stop: &AtomicBool) {
        let mut next_frr_check = Instant::now();
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            // The newest desired state.
            loop {
                match rx.try_recv() {
                    Ok(d) => {
                        self.desired = d;
                        self.dirty = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            if self.dirty && self.retry.is_none_or(|t| now >= t) {
                self.retry = None;
                if let Err(e) = self.sync_mirror() {
                    warn!("EVPN: {e}; trying again in 1 s");
                    self.retry = Some(now + Duration::from_secs(1));
                }
            }
            if now >= next_frr_check {
                next_frr_check = now + Duration::from_millis(250);
                self.watch_frr(now);
            }
            // Kernel events: remote routes installed or withdrawn by zebra.
            loop {
                match self.events.read(&self.links, &mut seen) {
                    Ok(Read::Empty) => break,
                    Ok(Read::Some) => {}
                    Ok(Read::Overrun) => {
                        warn!("EVPN: netlink events were lost; reading the mirror again");
                        if let Err(e) = self.resync(false) {
                            warn!("EVPN: reading the mirror: {e}");
                        }
                    }
                    Err(e) => {
                        warn!("EVPN: netlink events: {e}");
                        break;
                    }
                }
            }
            for s in seen.drain(..) {
                if let Seen::Remote(c) = s {
                    self.rec.change(c);
                }
            }
            let ops = self.rec.plan(Instant::now());
            if !ops.is_empty() {
                let (n, macs) = (ops.len(), ops.iter().filter(|o| matches!(o, Op::SetMac { .. })).count());
                let refused = self.plane.apply(ops);
                debug!(
                    "EVPN: {n} changes applied to the data plane ({macs} remote MACs set, {refused} refused)"
                );
                if refused > 0 {
                    warn!("EVPN: the VTEP refused {refused} remote entries (table full?)");
                }
            }
            // Sleep until an event, a change from the API (polled), or a timer.
            let mut wait = Duration::from_millis(50);
            if let Some(due) = self.rec.next_due() {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
            let mut pfd = libc::pollfd { fd: self.events.fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: poll(2) on one pollfd that lives across the call.
            unsafe { libc::poll(&mut pfd, 1, wait.as_millis().max(1) as libc::c_int) };
        }
    }

    fn watch_frr(&mut self, now: Instant) {
        let pids = frr_pids(&self.frr_dir);
        if pids == self.frr {
            return;
        }
        match pids {
            None => {
                warn!("EVPN: FRR stopped; the data plane keeps every remote route until it is back");
                self.rec.set_frr(None);
            }
            Some(_) => {
                info!(
                    "EVPN: FRR (re)started; routes it does not install again within {} s are removed",
                    self.rec.policy().grace.as_secs()
                );
                self.rec.set_frr(Some(now));
            }
        }
        self.frr = pids;
    }

    /// Brings the mirror's devices and local entries to `desired`.
    fn sync_mirror(&mut self) -> Result<(), AgentError> {
        let gone: Vec<u32> = self.written.keys().filter(|v| !self.desired.contains_key(v)).copied().collect();
        for vni in gone {
            self.mirror.remove_vni(vni)?;
            self.written.remove(&vni);
            self.links.retain(|_, (v, _)| *v != vni);
            let ops = self.rec.forget(vni);
            self.plane.apply(ops);
            info!("EVPN: VNI {vni} no longer mirrored (its type-3 and type-2 routes are withdrawn)");
        }
        let desired = std::mem::take(&mut self.desired);
        let r = self.sync_vnis(&desired);
        self.desired = desired;
        r?;
        self.dirty = false;
        Ok(())
    }

    fn sync_vnis(&mut self, desired: &Desired) -> Result<(), AgentError> {
        // (VNI, role) → index, built once: a scan of `links` per VNI costs O(VNIs²) a pass.
        let mut index: HashMap<(u32, Role), u32> = self.links.iter().map(|(&i, &vr)| (vr, i)).collect();
        for (&vni, d) in desired {
            if !self.written.contains_key(&vni) {
                self.mirror.add_vni(vni, self.local)?;
                // Only this VNI's devices changed: look them up, not every link again.
                let new = self.mirror.vni_links(vni)?;
                self.links.retain(|_, (v, _)| *v != vni);
                index.retain(|(v, _), _| *v != vni);
                index.extend(new.iter().map(|(&i, &vr)| (vr, i)));
                self.links.extend(new);
                self.written.insert(vni, Written::default());
                info!("EVPN: VNI {vni} mirrored (advertised as a type-3 route)");
            }
            let (Some(&port), Some(&bridge)) =
                (index.get(&(vni, Role::Port)), index.get(&(vni, Role::Bridge)))
            else {
                // Devices missing (deleted behind our back): rebuild them next time.
                self.written.remove(&vni);
                return Err(AgentError::DevicesMissing(vni));
            };
            let Some(w) = self.written.get_mut(&vni) else { continue };
            let old: Vec<(Mac, BTreeSet<IpAddr>)> = w
                .macs
                .iter()
                .filter(|(m, _)| !d.macs.contains_key(*m))
                .map(|(m, i)| (*m, i.clone()))
                .collect();
            for (mac, ips) in old {
                for ip in ips {
                    self.mirror.del_ip(bridge, ip)?;
                }
                self.mirror.del_mac(port, mac)?;
                w.macs.remove(&mac);
            }
            for (mac, ips) in &d.macs {
                if !w.macs.contains_key(mac) {
                    self.mirror.add_mac(port, *mac)?;
                    w.macs.insert(*mac, BTreeSet::new());
                }
                let have = w.macs.entry(*mac).or_default();
                for ip in have.difference(ips).copied().collect::<Vec<_>>() {
                    self.mirror.del_ip(bridge, ip)?;
                    have.remove(&ip);
                }
                for ip in ips.difference(&have.clone()) {
                    self.mirror.add_ip(bridge, *ip, *mac)?;
                    have.insert(*ip);
                }
            }
            if w.generation != Some(d.generation) {
                // A new VTEP VNI: give it what is known.
                w.generation = Some(d.generation);
                self.plane.apply(self.rec.replay(vni));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_the_default_and_each_vni() {
        let m = Modes::new(false);
        assert!(!m.is_evpn(5) && !m.any());
        m.set(5, Some(true));
        assert!(m.is_evpn(5) && m.any() && !m.is_evpn(6));
        m.set(5, None);
        assert!(!m.is_evpn(5));
        let m = Modes::new(true);
        m.set(7, Some(false));
        assert!(m.is_evpn(6) && !m.is_evpn(7) && m.any());
    }

    #[test]
    fn frr_is_seen_running_only_with_both_live_pid_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(frr_pids(dir.path()), None);
        // Our own pid is alive but is not zebra: not FRR.
        let me = std::process::id().to_string();
        std::fs::write(dir.path().join("zebra.pid"), &me).unwrap();
        std::fs::write(dir.path().join("bgpd.pid"), &me).unwrap();
        assert_eq!(frr_pids(dir.path()), None);
        std::fs::write(dir.path().join("zebra.pid"), "not a pid").unwrap();
        assert_eq!(frr_pids(dir.path()), None);
        // A zombie is dead: a child killed and not yet reaped.
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        assert!(proc_alive(child.id(), "sleep"));
        child.kill().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(!proc_alive(child.id(), "sleep"), "a zombie");
        child.wait().unwrap();
        assert!(!proc_alive(child.id(), "sleep"));
    }
}
