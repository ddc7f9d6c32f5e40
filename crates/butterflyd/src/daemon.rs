//! The API handler: keeps Butterfly's configuration model (from butterfly-api) and brings the
//! data plane in line with it after every request. A request that the data plane cannot
//! carry out is answered with an error and leaves both the model and the graph as they were.

use std::net::IpAddr;

use brick_firewall::{ruleset_from_security_groups, CompiledRuleset, SgOptions};
use butterfly_api::{
    AppConfig, AppStatus, Handler, HandlerError, HandlerResult, MemoryHandler, Model, NicImport, NicImported,
    NicInfo, NicSpec, NicStats, NicUpdate, Rule, RulePeer, SecurityGroup, UnderlayTrace, VniSet, VniState,
};
use tracing::{info, warn};

use crate::dataplane::Dataplane;
use crate::handover::Handover;
use crate::state::StateStore;

/// Changes the log level at run time (app_config).
pub type LogControl =
    Box<dyn Fn(crate::config::LogLevel) -> Result<(), tracing_subscriber::reload::Error> + Send>;

/// butterflyd's [`Handler`].
pub struct Daemon {
    mem: MemoryHandler,
    dp: Dataplane,
    state: Option<StateStore>,
    log: LogControl,
    /// The EVPN agent, once a VNI is in EVPN mode.
    evpn: Option<crate::evpn::Agent>,
}

fn failed(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Failed(e.to_string())
}

/// Converts the API's security groups into the firewall crate's.
fn fw_groups(model: &Model) -> Vec<brick_firewall::SecurityGroup> {
    model
        .sgs()
        .map(|sg| brick_firewall::SecurityGroup {
            id: sg.id.clone(),
            members: sg.members.clone(),
            rules: sg.rules.iter().filter_map(fw_rule).collect(),
        })
        .collect()
}

fn fw_rule(r: &Rule) -> Option<brick_firewall::SgRule> {
    let (port_start, port_end) = r.ports.unwrap_or((0, u16::MAX));
    let target = match &r.peer {
        RulePeer::Cidr(c) => brick_firewall::SgTarget::Cidr(brick_firewall::Cidr::new(c.address, c.prefix)?),
        RulePeer::SecurityGroup(id) => brick_firewall::SgTarget::Group(id.clone()),
    };
    Some(brick_firewall::SgRule {
        direction: match r.direction {
            butterfly_api::Direction::Inbound => brick_firewall::SgDirection::Inbound,
            butterfly_api::Direction::Outbound => brick_firewall::SgDirection::Outbound,
        },
        protocol: i32::from(r.protocol),
        port_start,
        port_end,
        target,
    })
}

/// Compiles the ruleset of one NIC from its IPs and security groups.
pub fn nic_ruleset(model: &Model, nic: &NicInfo) -> Result<CompiledRuleset, brick_firewall::Error> {
    let groups = fw_groups(model);
    let names: Vec<&str> = nic.spec.security_groups.iter().map(String::as_str).collect();
    let ips: Vec<IpAddr> = nic.spec.ips.clone();
    let rs = ruleset_from_security_groups(&ips, &names, &groups, &SgOptions::default())?;
    Ok(CompiledRuleset::new(rs)?)
}

/// Why a NIC of the model could not be brought into the data plane.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Its security groups do not make a ruleset.
    #[error(transparent)]
    Rules(#[from] brick_firewall::Error),
    /// The data plane refused the change.
    #[error(transparent)]
    Dataplane(#[from] crate::dataplane::DataplaneError),
}

impl Daemon {
    /// A handler over `dp`, persisting to `state` when given.
    pub fn new(mem: MemoryHandler, dp: Dataplane, state: Option<StateStore>, log: LogControl) -> Daemon {
        Daemon { mem, dp, state, log, evpn: None }
    }

    /// Restores the saved configuration: security groups, then every NIC. NICs that cannot
    /// be recreated are reported and left out; the others come back (vhost-user sockets at
    /// the same paths, so QEMU reconnects). The state file is not rewritten here; when a NIC
    /// was left out, a copy of the file as it was is kept beside it (`*.before-restore`),
    /// since the next change saved through the API no longer holds that NIC.
    ///
    /// Each NIC's connection table, if the previous process handed it over (a graceful
    /// stop), goes into its new firewall before the NIC joins the graph; a hand-over file
    /// that cannot be used is reported and left aside (`*.handover.rejected`), and those NICs
    /// start with empty tables (their TCP sessions are picked up mid-stream, as after a crash).
    pub fn restore(&mut self) -> std::io::Result<usize> {
        let Some(store) = &self.state else { return Ok(0) };
        // The configuration first: a state file that stops the start leaves the hand-over
        // in place for the start that follows its repair.
        let model = store.load()?;
        let mut handed = self.take_handover(store.handover_path());
        let Some(model) = model else { return Ok(0) };
        let path = store.path().to_path_buf();
        self.mem.model = model;
        // VNIs' own BUM modes first, so that each VNI floods as it should from its first NIC.
        // One that no longer fits this daemon (another --ip or family) is left out.
        let mut left_out = 0;
        let settings: Vec<_> = self.mem.model.vni_settings().map(|(v, m)| (v, m.clone())).collect();
        for (vni, mode) in settings {
            let ok: Result<(), Box<dyn std::error::Error>> = crate::bum::check(&mode, self.dp.local_ip())
                .map_err(Into::into)
                .and_then(|()| self.dp.set_vni_bum(vni, Some(mode)).map_err(Into::into));
            if let Err(e) = ok {
                warn!("restoring the BUM mode of VNI {vni}: {e}; it is left out (the default applies)");
                self.mem.model.vni_set(vni, None);
                left_out += 1;
            }
        }
        let ids = self.mem.model.nic_ids();
        let mut restored = 0;
        let mut conns = (0, 0);
        // TAP NICs take back their devices (kept by the previous process) while restoring.
        self.dp.set_restoring(true);
        for id in &ids {
            // The handed-over table goes into the NIC's new firewall before the NIC joins
            // the graph: its first packets already find their connections.
            let table = handed.as_mut().and_then(|(h, now)| Some((h.remove(id)?, *now)));
            if let Some((table, now)) = table.filter(|(t, _)| !t.is_empty()) {
                self.dp.set_pending_import(id, table, now);
            }
            match self.sync(id, true) {
                Ok(()) => {
                    restored += 1;
                    let (imported, total) = self.report_import(id);
                    conns.0 += imported;
                    conns.1 += total;
                }
                Err(e) => {
                    warn!("restoring NIC {id}: {e}; it is left out");
                    self.mem.model.nic_del(id);
                }
            }
            self.dp.set_pending_import(id, Vec::new(), brick_firewall::Timestamp(0));
        }
        self.dp.set_restoring(false);
        if let Some((h, _)) = handed {
            if conns.1 > 0 || !h.is_empty() {
                info!(
                    "connections handed over by the previous process: {} of {} imported{}",
                    conns.0,
                    conns.1,
                    if h.is_empty() {
                        String::new()
                    } else {
                        format!(", tables of {} unknown NIC(s) ignored", h.len())
                    }
                );
            }
        }
        self.evpn_sync();
        if restored < ids.len() || left_out > 0 {
            let kept = path.with_extension("json.before-restore");
            match std::fs::copy(&path, &kept) {
                Ok(_) => warn!(
                    "{} NIC(s) and {left_out} VNI setting(s) left out; the configuration as saved is kept in {}",
                    ids.len() - restored,
                    kept.display()
                ),
                Err(e) => warn!("cannot keep a copy of {} in {}: {e}", path.display(), kept.display()),
            }
        }
        Ok(restored)
    }

    /// How many NICs the configuration holds.
    pub fn nic_count(&self) -> usize {
        self.mem.model.nic_ids().len()
    }

    /// Reads and removes the hand-over file: each NIC's connection table, and the instant
    /// (on the data plane's clock) their remaining lifetimes count from (the time of the
    /// save: the time the daemon was down counts). `None` when there is none or it cannot
    /// be used (reported, and kept aside as `*.handover.rejected`).
    fn take_handover(
        &self,
        path: std::path::PathBuf,
    ) -> Option<(std::collections::HashMap<String, Vec<u8>>, brick_firewall::Timestamp)> {
        let loaded = Handover::load(&path);
        match loaded {
            Ok(None) => None,
            Ok(Some(h)) => {
                if let Err(e) = std::fs::remove_file(&path) {
                    warn!("cannot remove {} once read: {e}", path.display());
                }
                let age = h.age_ms(crate::handover::wall_ms());
                let now = brick_firewall::Timestamp::now();
                let then =
                    brick_firewall::Timestamp(now.as_nanos().saturating_sub(age.saturating_mul(1_000_000)));
                info!(
                    "hand-over from the previous process: {} NIC table(s), saved {:.3} s ago",
                    h.tables.len(),
                    age as f64 / 1000.0
                );
                Some((h.tables.into_iter().collect(), then))
            }
            Err(e) => {
                let aside = path.with_extension("handover.rejected");
                let kept = match std::fs::rename(&path, &aside) {
                    Ok(()) => format!("kept as {}", aside.display()),
                    Err(_) => "not kept".to_string(),
                };
                warn!(
                    "the connection tables handed over in {} cannot be used: {e}; starting without them \
                     (established TCP sessions are picked up mid-stream), the file {kept}",
                    path.display()
                );
                None
            }
        }
    }

    /// Reports the import of NIC `id`'s handed-over table, done as its firewall was built
    /// (the NIC then starts with an empty table on failure). Returns (imported,
    /// connections in the table).
    fn report_import(&mut self, id: &str) -> (usize, usize) {
        match self.dp.take_import_result(id) {
            Some(Ok(s)) => {
                if s.skipped > 0 {
                    info!(
                        "NIC {id}: {} connection(s) back, {} no longer allowed by its rules",
                        s.imported, s.skipped
                    );
                }
                (s.imported, s.imported + s.skipped)
            }
            Some(Err(e)) => {
                warn!("NIC {id}: its handed-over connections cannot be imported: {e}; it starts with none");
                (0, 0)
            }
            None => (0, 0),
        }
    }

    /// Hands the connection tables over to the next start (with a state directory), then
    /// removes every NIC from the graph and stops it (the saved state is kept, and so are
    /// TAP devices).
    pub fn shutdown(&mut self) {
        if let Some(store) = &self.state {
            let t = std::time::Instant::now();
            let path = store.handover_path();
            let saved = self
                .dp
                .export_all()
                .map_err(|e| e.to_string())
                .map(|tables| Handover { saved_at_ms: crate::handover::wall_ms(), tables })
                .and_then(|h| h.save(&path).map(|()| h).map_err(|e| e.to_string()));
            match saved {
                Ok(h) => info!(
                    "connection tables of {} NIC(s) handed over in {} ({} bytes, {:.1} ms)",
                    h.tables.len(),
                    path.display(),
                    h.tables.iter().map(|(_, t)| t.len()).sum::<usize>(),
                    t.elapsed().as_secs_f64() * 1000.0
                ),
                Err(e) => warn!(
                    "cannot hand the connection tables over: {e}; the next start picks TCP sessions up mid-stream"
                ),
            }
        }
        // The mirror stays as it is: routes stay advertised across a restart.
        self.evpn = None;
        self.dp.shutdown();
    }

    /// Brings NIC `id` of the model into the data plane.
    fn sync(&mut self, id: &str, recreate: bool) -> Result<(), SyncError> {
        let desired = self.mem.model.nic(id).cloned();
        let rules = match &desired {
            Some(n) if !n.spec.bypass_filtering => Some(nic_ruleset(&self.mem.model, n)?),
            _ => None,
        };
        Ok(self.dp.apply(id, desired.as_ref(), rules, recreate)?)
    }

    /// Runs `change` on the model, then brings `affected(model)` NICs into the data plane;
    /// on failure restores the model and the data plane and returns the error.
    fn transact<T>(
        &mut self,
        recreate: bool,
        change: impl FnOnce(&mut MemoryHandler) -> HandlerResult<T>,
        affected: impl FnOnce(&Model, &Model) -> Vec<String>,
    ) -> HandlerResult<T> {
        let before = self.mem.model.clone();
        let out = change(&mut self.mem)?;
        let ids = affected(&before, &self.mem.model);
        for (i, id) in ids.iter().enumerate() {
            if let Err(e) = self.sync(id, recreate) {
                warn!("request failed on NIC {id}: {e}; rolling back");
                self.roll_back(before, &ids[..=i]);
                return Err(failed(e));
            }
        }
        // What the client is told succeeded must survive a restart: a save that fails
        // undoes the request.
        if let Some(s) = &self.state {
            if let Err(e) = s.save(&self.mem.model) {
                let e = format!("cannot save the configuration to {}: {e}", s.path().display());
                warn!("{e}; rolling back");
                self.roll_back(before, &ids);
                return Err(failed(e));
            }
        }
        self.evpn_sync();
        Ok(out)
    }

    /// Hands the EVPN VNIs with NICs, their MACs and IPs, to the EVPN agent (started on
    /// first need: a VNI in EVPN mode).
    fn evpn_sync(&mut self) {
        if self.evpn.is_none() {
            if !self.dp.evpn_wanted() {
                return;
            }
            match crate::evpn::Agent::start(self.dp.evpn_config(), self.dp.local_ip(), self.dp.evpn_plane()) {
                Ok(a) => self.evpn = Some(a),
                Err(e) => {
                    warn!("EVPN: cannot start: {e}");
                    return;
                }
            }
        }
        let mut desired = crate::evpn::Desired::new();
        for (vni, generation) in self.dp.evpn_vnis() {
            desired.insert(vni, crate::evpn::DesiredVni { generation, ..Default::default() });
        }
        for n in self.mem.model.nics() {
            if let Some(d) = desired.get_mut(&n.spec.vni) {
                d.macs.entry(n.spec.mac.octets()).or_default().extend(n.spec.ips.iter().copied());
            }
        }
        if let Some(a) = &self.evpn {
            a.update(desired);
        }
    }

    /// Puts the model back to `before` and brings `ids` back to it in the data plane. In
    /// place where the NIC's structure allows (not recreated: a VM keeps its vhost-user
    /// socket or TAP, the firewall its connections, the trace its file).
    fn roll_back(&mut self, before: Model, ids: &[String]) {
        self.mem.model = before;
        for undo in ids {
            if let Err(e) = self.sync(undo, false) {
                warn!("rollback of NIC {undo}: {e}");
            }
        }
    }

    /// Refuses addresses another NIC of the VNI already has: two VMs answering for one IP
    /// would take each other's traffic (and each one's anti-spoof lets it send from it).
    fn check_ips(&self, id: &str, vni: u32, ips: &[IpAddr]) -> HandlerResult<()> {
        for n in self.mem.model.nics().filter(|n| n.spec.id != id && n.spec.vni == vni) {
            if let Some(ip) = ips.iter().find(|ip| n.spec.ips.contains(ip)) {
                return Err(failed(format!(
                    "NIC {id}: IP {ip} is already used by NIC {} in VNI {vni}",
                    n.spec.id
                )));
            }
        }
        Ok(())
    }

    fn sg_affected(sg_id: &str) -> impl FnOnce(&Model, &Model) -> Vec<String> + '_ {
        move |before, after| {
            let mut ids = before.nics_affected_by_sg(sg_id);
            ids.extend(after.nics_affected_by_sg(sg_id));
            ids.sort();
            ids.dedup();
            ids
        }
    }
}

impl Handler for Daemon {
    fn nic_add(&mut self, nic: NicSpec) -> HandlerResult<NicInfo> {
        let id = nic.id.clone();
        // Two NICs with one MAC in one VNI would fight over the switch's static entry and
        // the remote VTEPs' tables: refused, nothing changes (replacing the same id is fine).
        let mac = nic.mac.octets();
        if let Some(other) = self
            .mem
            .model
            .nics()
            .find(|n| n.spec.id != id && n.spec.vni == nic.vni && n.spec.mac.octets() == mac)
        {
            return Err(failed(format!(
                "NIC {id}: MAC {} is already used by NIC {} in VNI {}",
                nic.mac, other.spec.id, nic.vni
            )));
        }
        self.check_ips(&id, nic.vni, &nic.ips)?;
        match self.mem.model.nic(&id) {
            // Butterfly's semantics: the NIC is removed and created again, but say so.
            Some(old) => info!(
                "nic_add {id} vni {} mac {}: replaces the existing NIC {id} (vni {}, mac {}), recreated",
                nic.vni, nic.mac, old.spec.vni, old.spec.mac
            ),
            None => info!("nic_add {id} vni {} mac {}", nic.vni, nic.mac),
        }
        self.transact(true, |m| m.nic_add(nic), |_, _| vec![id])
    }

    fn nic_update(&mut self, update: NicUpdate) -> HandlerResult<()> {
        let id = update.id.clone();
        if let (Some(ips), Some(nic)) = (&update.ips, self.mem.model.nic(&id)) {
            self.check_ips(&id, nic.spec.vni, ips)?;
        }
        self.transact(false, |m| m.nic_update(update), |_, _| vec![id])
    }

    fn nic_del(&mut self, id: &str) -> HandlerResult<()> {
        info!("nic_del {id}");
        let owned = id.to_string();
        self.transact(false, |m| m.nic_del(id), |_, _| vec![owned])
    }

    fn nic_list(&mut self) -> HandlerResult<Vec<String>> {
        self.mem.nic_list()
    }

    fn nic_details(&mut self, id: Option<&str>) -> HandlerResult<Vec<NicInfo>> {
        self.mem.nic_details(id)
    }

    fn nic_stats(&mut self, id: &str) -> HandlerResult<NicStats> {
        self.mem.nic_stats(id)?;
        let c = self.dp.counters(id).unwrap_or_default();
        Ok(NicStats { rx_bytes: c.from_vm_bytes, tx_bytes: c.to_vm_bytes, bench: self.dp.bench_stats(id) })
    }

    fn nic_export(&mut self, id: &str) -> HandlerResult<Vec<u8>> {
        self.mem.nic_export(id)?;
        // Butterfly never implemented this: we return the firewall's connection table, the
        // state a VM needs to keep its connections when it migrates to another host.
        Ok(self.dp.export_connections(id).map_err(failed)?.unwrap_or_default())
    }

    fn nic_import(&mut self, import: NicImport) -> HandlerResult<NicImported> {
        let NicImport { id, data } = import;
        let Some(nic) = self.mem.model.nic(&id) else { return Err(HandlerError::NicNotFound(id)) };
        // An empty export (a NIC without connections; Butterfly's nic_export): nothing to do.
        if data.is_empty() {
            return Ok(NicImported::default());
        }
        if nic.spec.bypass_filtering {
            return Err(failed(format!(
                "NIC {id} has no firewall (bypass_filtering): no connections to import"
            )));
        }
        let ips = nic.spec.ips.clone();
        let bytes = data.len();
        match self.dp.import_connections(&id, data, brick_firewall::Timestamp::now(), ips).map_err(failed)? {
            Some(Ok(s)) => {
                info!(
                    "nic_import {id}: {} connection(s) imported, {} skipped by its rules ({bytes} bytes)",
                    s.imported, s.skipped
                );
                Ok(NicImported {
                    imported: u32::try_from(s.imported).unwrap_or(u32::MAX),
                    skipped: u32::try_from(s.skipped).unwrap_or(u32::MAX),
                })
            }
            Some(Err(e)) => Err(failed(format!("NIC {id}: connections refused, nothing imported: {e}"))),
            None => Err(failed(format!("NIC {id} has no firewall: no connections to import"))),
        }
    }

    fn sg_add(&mut self, sg: SecurityGroup) -> HandlerResult<()> {
        let id = sg.id.clone();
        self.transact(false, |m| m.sg_add(sg), Self::sg_affected(&id))
    }

    fn sg_del(&mut self, id: &str) -> HandlerResult<()> {
        self.transact(false, |m| m.sg_del(id), Self::sg_affected(id))
    }

    fn sg_list(&mut self) -> HandlerResult<Vec<String>> {
        self.mem.sg_list()
    }

    fn sg_details(&mut self, id: Option<&str>) -> HandlerResult<Vec<SecurityGroup>> {
        self.mem.sg_details(id)
    }

    fn sg_rule_add(&mut self, sg_id: &str, rule: Rule) -> HandlerResult<()> {
        self.transact(false, |m| m.sg_rule_add(sg_id, rule), Self::sg_affected(sg_id))
    }

    fn sg_rule_del(&mut self, sg_id: &str, rule: Rule) -> HandlerResult<()> {
        self.transact(false, |m| m.sg_rule_del(sg_id, rule), Self::sg_affected(sg_id))
    }

    fn sg_rule_list(&mut self, sg_id: &str) -> HandlerResult<Vec<Rule>> {
        self.mem.sg_rule_list(sg_id)
    }

    fn sg_member_add(&mut self, sg_id: &str, member: IpAddr) -> HandlerResult<()> {
        self.transact(false, |m| m.sg_member_add(sg_id, member), Self::sg_affected(sg_id))
    }

    fn sg_member_del(&mut self, sg_id: &str, member: IpAddr) -> HandlerResult<()> {
        self.transact(false, |m| m.sg_member_del(sg_id, member), Self::sg_affected(sg_id))
    }

    fn sg_member_list(&mut self, sg_id: &str) -> HandlerResult<Vec<IpAddr>> {
        self.mem.sg_member_list(sg_id)
    }

    fn app_status(&mut self, base: AppStatus) -> HandlerResult<AppStatus> {
        let graph_dot = self.dp.dot().map_err(failed)?;
        Ok(AppStatus { graph_dot, ..base })
    }

    fn app_quit(&mut self) -> HandlerResult<()> {
        info!("app_quit: shutting down");
        self.mem.app_quit()
    }

    fn vni_set(&mut self, set: VniSet) -> HandlerResult<()> {
        let vni = set.vni;
        if let Some(mode) = &set.mode {
            crate::bum::check(mode, self.dp.local_ip()).map_err(|e| failed(format!("VNI {vni}: {e}")))?;
        }
        let before = self.mem.model.clone();
        let previous = self.mem.model.vni_set(vni, set.mode.clone());
        if let Err(e) = self.dp.set_vni_bum(vni, set.mode.clone()) {
            self.mem.model = before;
            return Err(failed(e));
        }
        if let Some(s) = &self.state {
            if let Err(e) = s.save(&self.mem.model) {
                let e = format!("cannot save the configuration to {}: {e}", s.path().display());
                warn!("{e}; rolling back");
                self.mem.model = before;
                if let Err(e) = self.dp.set_vni_bum(vni, previous) {
                    warn!("rollback of VNI {vni}: {e}");
                }
                return Err(failed(e));
            }
        }
        match &set.mode {
            Some(m) => info!("vni_set {vni}: {m}"),
            None => info!("vni_set {vni}: back to the default"),
        }
        self.evpn_sync();
        Ok(())
    }

    fn vni_details(&mut self, vni: Option<u32>) -> HandlerResult<Vec<VniState>> {
        let vnis = match vni {
            Some(v) => vec![v],
            None => self.mem.model.vnis_in_use(),
        };
        let mut out = Vec::with_capacity(vnis.len());
        for v in vnis {
            let (mut mode, own) = self.dp.bum_of(v);
            if let butterfly_api::BumMode::Evpn { flood } = &mut mode {
                *flood = self.dp.flood_of(v).map_err(failed)?;
            }
            out.push(VniState {
                vni: v,
                mode,
                own,
                remote_vteps: self.dp.remote_vteps(v).map_err(failed)?,
                nics: self.mem.model.nics_in_vni(v) as u32,
            });
        }
        Ok(out)
    }

    fn underlay_trace(&mut self, set: Option<UnderlayTrace>) -> HandlerResult<UnderlayTrace> {
        if let Some(set) = set {
            let path = set.path.as_deref().map(std::path::Path::new);
            self.dp.set_underlay_trace(set.enabled, path).map_err(failed)?;
            match self.dp.underlay_trace() {
                Some(p) => info!("underlay trace: on, into {}", p.display()),
                None => info!("underlay trace: off"),
            }
        }
        let path = self.dp.underlay_trace().map(|p| p.to_string_lossy().into_owned());
        Ok(UnderlayTrace { enabled: path.is_some(), path })
    }

    fn app_config(&mut self, config: AppConfig) -> HandlerResult<()> {
        if let Some(level) = config.log_level {
            let ours = match level {
                butterfly_api::LogLevel::None => crate::config::LogLevel::None,
                butterfly_api::LogLevel::Error => crate::config::LogLevel::Error,
                butterfly_api::LogLevel::Warning => crate::config::LogLevel::Warning,
                butterfly_api::LogLevel::Info => crate::config::LogLevel::Info,
                butterfly_api::LogLevel::Debug => crate::config::LogLevel::Debug,
            };
            (self.log)(ours)
                .map_err(|e| failed(format!("Application configuration failed: log level: {e}")))?;
        }
        self.mem.app_config(config)
    }
}
