//! [`Model`]: the configuration store (NICs, security groups with members
//! and rules) with Butterfly's semantics, serialisable to JSON so a daemon
//! can persist it; and [`MemoryHandler`], a complete [`Handler`] over it.

use crate::handler::{Handler, HandlerError, HandlerResult};
use crate::pb;
use crate::types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// Configuration store. Maps are ordered by id, so lists are sorted.
///
/// Semantics (Butterfly's):
/// - adding a NIC or an SG with an existing id replaces it entirely;
/// - deletes of unknown ids are no-ops;
/// - adding a rule or a member to an unknown SG creates the SG;
/// - duplicates (rules, members) are ignored;
/// - members are kept in insertion order, rules in [`Rule::order_key`] order
///   (libstdc++ hash order, as Butterfly lists them);
/// - deleting an SG leaves NICs referencing it untouched (dangling id).
///
/// It also keeps each VNI's own BUM mode (butterfly-rs's `vni_set`), whether the VNI has
/// NICs or not. A model without any is saved exactly as before the extension.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    nics: BTreeMap<String, NicInfo>,
    sgs: BTreeMap<String, SecurityGroup>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    vnis: BTreeMap<u32, BumMode>,
}

/// Outcome of [`Model::sg_add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SgChange {
    /// The group did not exist.
    Created,
    /// The group existed and differed.
    Replaced,
    /// The group existed and was identical (no-op).
    Unchanged,
}

/// Errors of JSON persistence.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// JSON (de)serialisation failed.
    #[error("model JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Model {
    /// Empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a NIC, returning the one it replaced.
    pub fn nic_add(&mut self, nic: NicInfo) -> Option<NicInfo> {
        self.nics.insert(nic.spec.id.clone(), nic)
    }
    /// Applies an update; returns the updated NIC, or `None` if unknown.
    pub fn nic_update(&mut self, update: &NicUpdate) -> Option<&NicInfo> {
        let nic = self.nics.get_mut(&update.id)?;
        nic.apply(update);
        Some(nic)
    }
    /// Removes a NIC, returning it.
    pub fn nic_del(&mut self, id: &str) -> Option<NicInfo> {
        self.nics.remove(id)
    }
    /// One NIC.
    pub fn nic(&self, id: &str) -> Option<&NicInfo> {
        self.nics.get(id)
    }
    /// All NICs, sorted by id.
    pub fn nics(&self) -> impl Iterator<Item = &NicInfo> {
        self.nics.values()
    }
    /// NIC ids, sorted.
    pub fn nic_ids(&self) -> Vec<String> {
        self.nics.keys().cloned().collect()
    }

    /// Creates or replaces a group.
    pub fn sg_add(&mut self, sg: SecurityGroup) -> SgChange {
        match self.sgs.get(&sg.id) {
            Some(old) if *old == sg => SgChange::Unchanged,
            Some(_) => {
                self.sgs.insert(sg.id.clone(), sg);
                SgChange::Replaced
            }
            None => {
                self.sgs.insert(sg.id.clone(), sg);
                SgChange::Created
            }
        }
    }
    /// Removes a group, returning it.
    pub fn sg_del(&mut self, id: &str) -> Option<SecurityGroup> {
        self.sgs.remove(id)
    }
    /// One group.
    pub fn sg(&self, id: &str) -> Option<&SecurityGroup> {
        self.sgs.get(id)
    }
    /// All groups, sorted by id.
    pub fn sgs(&self) -> impl Iterator<Item = &SecurityGroup> {
        self.sgs.values()
    }
    /// Group ids, sorted.
    pub fn sg_ids(&self) -> Vec<String> {
        self.sgs.keys().cloned().collect()
    }
    fn sg_entry(&mut self, id: &str) -> &mut SecurityGroup {
        self.sgs.entry(id.to_string()).or_insert_with(|| SecurityGroup::new(id))
    }
    /// Adds a rule (creating the group); false if it was already there.
    pub fn rule_add(&mut self, sg_id: &str, rule: Rule) -> bool {
        self.sg_entry(sg_id).add_rule(rule)
    }
    /// Removes a rule; false if the group or rule did not exist.
    pub fn rule_del(&mut self, sg_id: &str, rule: &Rule) -> bool {
        match self.sgs.get_mut(sg_id) {
            Some(sg) => {
                let before = sg.rules.len();
                sg.rules.retain(|r| r != rule);
                before != sg.rules.len()
            }
            None => false,
        }
    }
    /// Adds a member (creating the group); false if already a member.
    pub fn member_add(&mut self, sg_id: &str, ip: IpAddr) -> bool {
        self.sg_entry(sg_id).add_member(ip)
    }
    /// Removes a member; false if the group or member did not exist.
    pub fn member_del(&mut self, sg_id: &str, ip: IpAddr) -> bool {
        match self.sgs.get_mut(sg_id) {
            Some(sg) => {
                let before = sg.members.len();
                sg.members.retain(|m| *m != ip);
                before != sg.members.len()
            }
            None => false,
        }
    }

    /// Ids of NICs whose security groups include `sg_id` (sorted).
    pub fn nics_using_sg(&self, sg_id: &str) -> Vec<String> {
        self.nics
            .values()
            .filter(|n| n.spec.security_groups.iter().any(|s| s == sg_id))
            .map(|n| n.spec.id.clone())
            .collect()
    }
    /// Ids of groups having a rule whose peers are the members of `sg_id`.
    pub fn sgs_referencing(&self, sg_id: &str) -> Vec<String> {
        self.sgs
            .values()
            .filter(|sg| sg.rules.iter().any(|r| matches!(&r.peer, RulePeer::SecurityGroup(s) if s == sg_id)))
            .map(|sg| sg.id.clone())
            .collect()
    }
    /// NICs whose firewall depends on `sg_id`, directly or through rules
    /// referencing its members (what Butterfly rebuilds after a change of
    /// the group), sorted, without duplicates, bypass NICs excluded.
    pub fn nics_affected_by_sg(&self, sg_id: &str) -> Vec<String> {
        let mut ids = self.nics_using_sg(sg_id);
        for sg in self.sgs_referencing(sg_id) {
            ids.extend(self.nics_using_sg(&sg));
        }
        ids.sort();
        ids.dedup();
        ids.retain(|id| self.nics.get(id).is_some_and(|n| !n.spec.bypass_filtering));
        ids
    }

    /// Sets (`Some`) or forgets (`None`) the BUM mode of `vni`; returns the previous one.
    pub fn vni_set(&mut self, vni: u32, mode: Option<BumMode>) -> Option<BumMode> {
        match mode {
            Some(m) => self.vnis.insert(vni, m),
            None => self.vnis.remove(&vni),
        }
    }
    /// The BUM mode of `vni`, when it has one of its own.
    pub fn vni_bum(&self, vni: u32) -> Option<&BumMode> {
        self.vnis.get(&vni)
    }
    /// Every VNI's own BUM mode, sorted by VNI.
    pub fn vni_settings(&self) -> impl Iterator<Item = (u32, &BumMode)> {
        self.vnis.iter().map(|(v, m)| (*v, m))
    }
    /// The VNIs with a BUM mode of their own or at least one NIC, sorted.
    pub fn vnis_in_use(&self) -> Vec<u32> {
        let mut v: Vec<u32> =
            self.vnis.keys().copied().chain(self.nics.values().map(|n| n.spec.vni)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
    /// Number of NICs in `vni`.
    pub fn nics_in_vni(&self, vni: u32) -> usize {
        self.nics.values().filter(|n| n.spec.vni == vni).count()
    }

    /// JSON form, for persistence.
    pub fn to_json(&self) -> Result<String, ModelError> {
        Ok(serde_json::to_string_pretty(self)?)
    }
    /// Reads the JSON form.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        Ok(serde_json::from_str(text)?)
    }

    /// A request that recreates this configuration when replayed: one
    /// nic_add per NIC (with its effective trace settings), one sg_add per
    /// group, then one vni_set per VNI with a BUM mode of its own.
    /// message_ids are `nic:<id>` / `sg:<id>` / `vni:<vni>`.
    pub fn to_request(&self) -> pb::proto::Messages {
        let mut messages = Vec::new();
        let mut push = |id: String, req: pb::message_v0::Request| {
            messages.push(pb::proto::Message {
                revision: crate::PROTO_REVISION,
                error: None,
                message_0: Some(pb::MessageV0 { request: Some(req), response: None, message_id: Some(id) }),
            });
        };
        for n in self.nics.values() {
            let mut nic = pb::message_v0::Nic::from(n);
            nic.path = None;
            push(
                format!("nic:{}", n.spec.id),
                pb::message_v0::Request { nic_add: Some(nic), ..Default::default() },
            );
        }
        for sg in self.sgs.values() {
            push(
                format!("sg:{}", sg.id),
                pb::message_v0::Request { sg_add: Some(pb::message_v0::Sg::from(sg)), ..Default::default() },
            );
        }
        for (&vni, mode) in &self.vnis {
            let set = VniSet { vni, mode: Some(mode.clone()) };
            push(
                format!("vni:{vni}"),
                pb::message_v0::Request {
                    vni_set: Some(pb::message_v0::VniBum::from(&set)),
                    ..Default::default()
                },
            );
        }
        pb::proto::Messages { messages, encrypted: None }
    }
}

/// Reference [`Handler`]: stores everything in a [`Model`], creates nothing.
/// Paths follow Butterfly (`<socket_dir>/qemu-vhost-<id>`, the id for TAP,
/// `(nil)` for BENCH); stats are zero; the graph is an empty DOT digraph.
#[derive(Debug, Clone)]
pub struct MemoryHandler {
    /// The store.
    pub model: Model,
    /// Directory of vhost-user sockets.
    pub socket_dir: PathBuf,
    /// Trace NICs by default (the daemon's `--packet-trace`).
    pub default_packet_trace: bool,
    /// Current log level (set by app_config).
    pub log_level: LogLevel,
    /// Set when app_quit was received.
    pub quit_requested: bool,
}

impl Default for MemoryHandler {
    fn default() -> Self {
        MemoryHandler {
            model: Model::new(),
            socket_dir: PathBuf::from("/tmp"),
            default_packet_trace: false,
            log_level: LogLevel::Error,
            quit_requested: false,
        }
    }
}

impl MemoryHandler {
    /// A handler with an empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// The NIC record the reference daemon would store for `spec`.
    pub fn nic_info(&self, spec: NicSpec) -> NicInfo {
        let path = match spec.nic_type {
            NicType::VhostUserServer => {
                self.socket_dir.join(format!("qemu-vhost-{}", spec.id)).to_string_lossy().into_owned()
            }
            NicType::Tap => spec.id.clone(),
            NicType::Bench => "(nil)".to_string(),
        };
        let packet_trace = spec.packet_trace.unwrap_or(self.default_packet_trace);
        let packet_trace_path = spec
            .packet_trace_path
            .clone()
            .unwrap_or_else(|| format!("/tmp/butterfly-{}-{}.pcap", std::process::id(), spec.id));
        NicInfo { spec, path, packet_trace, packet_trace_path }
    }
}

impl Handler for MemoryHandler {
    fn nic_add(&mut self, nic: NicSpec) -> HandlerResult<NicInfo> {
        let info = self.nic_info(nic);
        self.model.nic_add(info.clone());
        Ok(info)
    }
    fn nic_update(&mut self, update: NicUpdate) -> HandlerResult<()> {
        match self.model.nic_update(&update) {
            Some(_) => Ok(()),
            None => Err(HandlerError::NicNotFound(update.id)),
        }
    }
    fn nic_del(&mut self, id: &str) -> HandlerResult<()> {
        self.model.nic_del(id);
        Ok(())
    }
    fn nic_list(&mut self) -> HandlerResult<Vec<String>> {
        Ok(self.model.nic_ids())
    }
    fn nic_details(&mut self, id: Option<&str>) -> HandlerResult<Vec<NicInfo>> {
        match id {
            Some(id) => match self.model.nic(id) {
                Some(n) => Ok(vec![n.clone()]),
                None => Err(HandlerError::NicNotFound(id.to_string())),
            },
            None => Ok(self.model.nics().cloned().collect()),
        }
    }
    fn nic_stats(&mut self, id: &str) -> HandlerResult<NicStats> {
        match self.model.nic(id) {
            Some(_) => Ok(NicStats::default()),
            None => Err(HandlerError::NicNotFound(id.to_string())),
        }
    }
    fn nic_export(&mut self, id: &str) -> HandlerResult<Vec<u8>> {
        match self.model.nic(id) {
            Some(_) => Ok(Vec::new()),
            None => Err(HandlerError::NicNotFound(id.to_string())),
        }
    }
    fn sg_add(&mut self, sg: SecurityGroup) -> HandlerResult<()> {
        self.model.sg_add(sg);
        Ok(())
    }
    fn sg_del(&mut self, id: &str) -> HandlerResult<()> {
        self.model.sg_del(id);
        Ok(())
    }
    fn sg_list(&mut self) -> HandlerResult<Vec<String>> {
        Ok(self.model.sg_ids())
    }
    fn sg_details(&mut self, id: Option<&str>) -> HandlerResult<Vec<SecurityGroup>> {
        match id {
            Some(id) => match self.model.sg(id) {
                Some(s) => Ok(vec![s.clone()]),
                None => Err(HandlerError::SgNotFound(id.to_string())),
            },
            None => Ok(self.model.sgs().cloned().collect()),
        }
    }
    fn sg_rule_add(&mut self, sg_id: &str, rule: Rule) -> HandlerResult<()> {
        self.model.rule_add(sg_id, rule);
        Ok(())
    }
    fn sg_rule_del(&mut self, sg_id: &str, rule: Rule) -> HandlerResult<()> {
        self.model.rule_del(sg_id, &rule);
        Ok(())
    }
    fn sg_rule_list(&mut self, sg_id: &str) -> HandlerResult<Vec<Rule>> {
        self.model.sg(sg_id).map(|s| s.rules.clone()).ok_or_else(|| HandlerError::SgNotFound(sg_id.into()))
    }
    fn sg_member_add(&mut self, sg_id: &str, member: IpAddr) -> HandlerResult<()> {
        self.model.member_add(sg_id, member);
        Ok(())
    }
    fn sg_member_del(&mut self, sg_id: &str, member: IpAddr) -> HandlerResult<()> {
        self.model.member_del(sg_id, member);
        Ok(())
    }
    fn sg_member_list(&mut self, sg_id: &str) -> HandlerResult<Vec<IpAddr>> {
        self.model.sg(sg_id).map(|s| s.members.clone()).ok_or_else(|| HandlerError::SgNotFound(sg_id.into()))
    }
    fn app_status(&mut self, mut base: AppStatus) -> HandlerResult<AppStatus> {
        base.graph_dot = "digraph G {\n}\n".to_string();
        Ok(base)
    }
    fn app_quit(&mut self) -> HandlerResult<()> {
        self.quit_requested = true;
        Ok(())
    }
    fn app_config(&mut self, config: AppConfig) -> HandlerResult<()> {
        if let Some(l) = config.log_level {
            self.log_level = l;
        }
        Ok(())
    }
    fn vni_set(&mut self, set: VniSet) -> HandlerResult<()> {
        self.model.vni_set(set.vni, set.mode);
        Ok(())
    }
    /// The reference has no underlay: the default is multicast to the VNI's default group
    /// (not resolved: no address), and no remote VTEP is ever known.
    fn vni_details(&mut self, vni: Option<u32>) -> HandlerResult<Vec<VniState>> {
        let vnis = match vni {
            Some(v) => vec![v],
            None => self.model.vnis_in_use(),
        };
        Ok(vnis
            .into_iter()
            .map(|v| {
                let own = self.model.vni_bum(v).cloned();
                VniState {
                    vni: v,
                    own: own.is_some(),
                    mode: own.unwrap_or(BumMode::Multicast { group: None }),
                    remote_vteps: Vec::new(),
                    nics: self.model.nics_in_vni(v) as u32,
                }
            })
            .collect())
    }
}
