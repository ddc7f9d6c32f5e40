//! The API handler: keeps Butterfly's configuration model (from butterfly-api) and brings the
//! data plane in line with it after every request. A request that the data plane cannot
//! carry out is answered with an error and leaves both the model and the graph as they were.

use std::net::IpAddr;

use brick_firewall::{ruleset_from_security_groups, CompiledRuleset, SgOptions};
use butterfly_api::{
    AppConfig, AppStatus, Handler, HandlerError, HandlerResult, MemoryHandler, Model, NicInfo, NicSpec,
    NicStats, NicUpdate, Rule, RulePeer, SecurityGroup, VniSet, VniState,
};
use tracing::{info, warn};

use crate::dataplane::Dataplane;
use crate::state::StateStore;

/// Changes the log level at run time (app_config).
pub type LogControl = Box<dyn Fn(crate::config::LogLevel) -> Result<(), String> + Send>;

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
pub fn nic_ruleset(model: &Model, nic: &NicInfo) -> Result<CompiledRuleset, String> {
    let groups = fw_groups(model);
    let names: Vec<&str> = nic.spec.security_groups.iter().map(String::as_str).collect();
    let ips: Vec<IpAddr> = nic.spec.ips.clone();
    let rs = ruleset_from_security_groups(&ips, &names, &groups, &SgOptions::default())
        .map_err(|e| e.to_string())?;
    CompiledRuleset::new(rs).map_err(|e| e.to_string())
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
    pub fn restore(&mut self) -> Result<usize, String> {
        let Some(store) = &self.state else { return Ok(0) };
        let Some(model) = store.load().map_err(|e| e.to_string())? else { return Ok(0) };
        let path = store.path().to_path_buf();
        self.mem.model = model;
        // VNIs' own BUM modes first, so that each VNI floods as it should from its first NIC.
        // One that no longer fits this daemon (another --ip or family) is left out.
        let mut left_out = 0;
        let settings: Vec<_> = self.mem.model.vni_settings().map(|(v, m)| (v, m.clone())).collect();
        for (vni, mode) in settings {
            let ok = crate::bum::check(&mode, self.dp.local_ip())
                .and_then(|()| self.dp.set_vni_bum(vni, Some(mode)).map_err(|e| e.to_string()));
            if let Err(e) = ok {
                warn!("restoring the BUM mode of VNI {vni}: {e}; it is left out (the default applies)");
                self.mem.model.vni_set(vni, None);
                left_out += 1;
            }
        }
        let ids = self.mem.model.nic_ids();
        let mut restored = 0;
        for id in &ids {
            match self.sync(id, true) {
                Ok(()) => restored += 1,
                Err(e) => {
                    warn!("restoring NIC {id}: {e}; it is left out");
                    self.mem.model.nic_del(id);
                }
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

    /// Removes every NIC from the graph and stops it (the saved state is kept).
    pub fn shutdown(&mut self) {
        // The mirror stays as it is: routes stay advertised across a restart.
        self.evpn = None;
        self.dp.shutdown();
    }

    /// Brings NIC `id` of the model into the data plane.
    fn sync(&mut self, id: &str, recreate: bool) -> Result<(), String> {
        let desired = self.mem.model.nic(id).cloned();
        let rules = match &desired {
            Some(n) if !n.spec.bypass_filtering => Some(nic_ruleset(&self.mem.model, n)?),
            _ => None,
        };
        self.dp.apply(id, desired.as_ref(), rules, recreate).map_err(|e| e.to_string())
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
        info!("nic_add {id} vni {} mac {}", nic.vni, nic.mac);
        self.transact(true, |m| m.nic_add(nic), |_, _| vec![id])
    }

    fn nic_update(&mut self, update: NicUpdate) -> HandlerResult<()> {
        let id = update.id.clone();
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
        Ok(NicStats { rx_bytes: c.from_vm_bytes, tx_bytes: c.to_vm_bytes })
    }

    fn nic_export(&mut self, id: &str) -> HandlerResult<Vec<u8>> {
        self.mem.nic_export(id)?;
        // Butterfly never implemented this: we return the firewall's connection table, the
        // state a VM needs to keep its connections when it migrates to another host.
        Ok(self.dp.export_connections(id).map_err(failed)?.unwrap_or_default())
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
