//! The [`Handler`] trait: the domain operations a daemon implements.
//!
//! Every method receives values that the library already decoded, validated
//! and canonicalised. A method returning `Err` produces a reply with
//! `status: false` and a description built from the error; the library never
//! calls a handler for a request that failed validation, so a rejected
//! request cannot change state.

use crate::types::*;
use std::net::IpAddr;

/// Failure of a domain operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The NIC does not exist. Reported as `NIC: <id> not found`, or
    /// `NIC does not exist with id <id>` for nic_update (Butterfly's texts).
    #[error("NIC {0} not found")]
    NicNotFound(String),
    /// The security group does not exist. Reported as `Security Group not
    /// found` (rule/member lists) or `Sg not found` (sg_details).
    #[error("security group {0} not found")]
    SgNotFound(String),
    /// Any other failure; the text becomes the description as is.
    #[error("{0}")]
    Failed(String),
}

/// Result of a handler operation.
pub type HandlerResult<T> = Result<T, HandlerError>;

/// Domain operations of the Butterfly API, implemented by the daemon.
///
/// The dispatcher ([`crate::Dispatcher`]) calls exactly one method per valid
/// request, in request order. Methods take `&mut self`: requests are served
/// one at a time. [`crate::MemoryHandler`] is a complete reference
/// implementation over [`crate::Model`].
pub trait Handler {
    /// Creates a NIC; an existing NIC with the same id must be replaced.
    /// Returns the stored NIC (its `path` is sent back in `nic_add.path`).
    fn nic_add(&mut self, nic: NicSpec) -> HandlerResult<NicInfo>;
    /// Updates a NIC ([`HandlerError::NicNotFound`] if it does not exist).
    fn nic_update(&mut self, update: NicUpdate) -> HandlerResult<()>;
    /// Deletes a NIC; deleting an unknown id must succeed.
    fn nic_del(&mut self, id: &str) -> HandlerResult<()>;
    /// NIC ids, sorted.
    fn nic_list(&mut self) -> HandlerResult<Vec<String>>;
    /// Details of one NIC (`Some(id)`) or of all NICs sorted by id (`None`).
    fn nic_details(&mut self, id: Option<&str>) -> HandlerResult<Vec<NicInfo>>;
    /// Byte counters of a NIC.
    fn nic_stats(&mut self, id: &str) -> HandlerResult<NicStats>;
    /// Firewall state export of a NIC (Butterfly returns empty data).
    fn nic_export(&mut self, id: &str) -> HandlerResult<Vec<u8>>;
    /// Creates or replaces a security group.
    fn sg_add(&mut self, sg: SecurityGroup) -> HandlerResult<()>;
    /// Deletes a security group; unknown ids succeed.
    fn sg_del(&mut self, id: &str) -> HandlerResult<()>;
    /// Security group ids, sorted.
    fn sg_list(&mut self) -> HandlerResult<Vec<String>>;
    /// One security group (`Some(id)`) or all of them sorted by id (`None`).
    fn sg_details(&mut self, id: Option<&str>) -> HandlerResult<Vec<SecurityGroup>>;
    /// Adds a rule, creating the group if needed; duplicates are ignored.
    fn sg_rule_add(&mut self, sg_id: &str, rule: Rule) -> HandlerResult<()>;
    /// Removes a rule; unknown group or rule succeed.
    fn sg_rule_del(&mut self, sg_id: &str, rule: Rule) -> HandlerResult<()>;
    /// Rules of a group, in list order.
    fn sg_rule_list(&mut self, sg_id: &str) -> HandlerResult<Vec<Rule>>;
    /// Adds a member, creating the group if needed; duplicates are ignored.
    fn sg_member_add(&mut self, sg_id: &str, member: IpAddr) -> HandlerResult<()>;
    /// Removes a member; idempotent.
    fn sg_member_del(&mut self, sg_id: &str, member: IpAddr) -> HandlerResult<()>;
    /// Members of a group, insertion order.
    fn sg_member_list(&mut self, sg_id: &str) -> HandlerResult<Vec<IpAddr>>;
    /// Status. `base` is filled by the library (server start date, current
    /// date, request counter, empty graph); return it, amended (graph_dot).
    fn app_status(&mut self, base: AppStatus) -> HandlerResult<AppStatus> {
        Ok(base)
    }
    /// The client asked the daemon to quit. The reply is sent first, then
    /// [`crate::Server::serve`] returns [`crate::ServeExit::Quit`].
    fn app_quit(&mut self) -> HandlerResult<()> {
        Ok(())
    }
    /// Applies settings.
    fn app_config(&mut self, config: AppConfig) -> HandlerResult<()>;
    /// butterfly-rs extension: sets or forgets (`set.mode == None`) the BUM mode of a VNI.
    /// The library checked the VNI, the mode and the addresses' kinds; the underlay's family
    /// and the daemon's own address are the handler's to check. Default: not supported.
    fn vni_set(&mut self, set: VniSet) -> HandlerResult<()> {
        Err(HandlerError::Failed(format!("VNI {}: BUM settings are not supported by this daemon", set.vni)))
    }
    /// butterfly-rs extension: imports connections (what `nic_export` returned, here or on
    /// another daemon) into a NIC's firewall: all or nothing, bad input refused with the
    /// reason and no change. Default: not supported.
    fn nic_import(&mut self, import: NicImport) -> HandlerResult<NicImported> {
        Err(HandlerError::Failed(format!(
            "NIC {}: connection import is not supported by this daemon",
            import.id
        )))
    }
    /// butterfly-rs extension: switches the underlay trace on (into `set.path`, or the
    /// daemon's default file) or off, live (`Some`; on failure nothing changes), and
    /// returns how it is now. Default: not supported.
    fn underlay_trace(&mut self, set: Option<UnderlayTrace>) -> HandlerResult<UnderlayTrace> {
        let _ = set;
        Err(HandlerError::Failed("the underlay trace is not supported by this daemon".into()))
    }
    /// butterfly-rs extension: the BUM mode in effect and state of one VNI (`Some`), or of
    /// every VNI with a setting of its own or a NIC, sorted (`None`). Default: not supported.
    fn vni_details(&mut self, vni: Option<u32>) -> HandlerResult<Vec<VniState>> {
        let _ = vni;
        Err(HandlerError::Failed("VNI details are not supported by this daemon".into()))
    }
}
