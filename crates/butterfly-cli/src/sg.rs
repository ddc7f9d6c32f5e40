//! `butterfly sg …`: security groups, their rules and members.

use crate::args::*;
use crate::ctx::*;
use crate::print::*;
use butterfly_api::pb::message_v0 as v0;
use butterfly_api::types::Rule;

/// Runs one `sg` command.
pub(crate) fn exec(ctx: &Ctx, cmd: &SgCmd) -> Result<(), Failure> {
    match cmd {
        SgCmd::Add { ids } => {
            let reqs = ids
                .iter()
                .map(|i| v0::Request {
                    sg_add: Some(v0::Sg { id: i.clone(), ..Default::default() }),
                    ..req()
                })
                .collect();
            ctx.call_many(reqs)?;
        }
        SgCmd::Del { ids } => {
            ctx.call_many(ids.iter().map(|i| v0::Request { sg_del: Some(i.clone()), ..req() }).collect())?;
        }
        SgCmd::List => {
            let r = ctx.call(v0::Request { sg_list: Some(true), ..req() })?;
            if ctx.human() {
                r.sg_list.iter().for_each(|s| println!("{s}"));
            }
        }
        SgCmd::Rule { cmd } => rule(ctx, cmd)?,
        SgCmd::Member { cmd } => member(ctx, cmd)?,
    }
    Ok(())
}

/// `sg rule …`: a rule to delete is found by its hash or given whole.
fn rule(ctx: &Ctx, cmd: &RuleCmd) -> Result<(), Failure> {
    match cmd {
        RuleCmd::Add { sg, rule } => {
            let rule = build_rule(rule)?;
            ctx.call(v0::Request {
                sg_rule_add: Some(v0::SgRuleAddReq { sg_id: sg.clone(), rule }),
                ..req()
            })?;
        }
        RuleCmd::Del { sg, id, rule } => {
            let rule = match id {
                Some(id) => {
                    let r = ctx.call(v0::Request { sg_rule_list: Some(sg.clone()), ..req() })?;
                    r.sg_rule_list
                        .into_iter()
                        .find(|r| Rule::try_from(r).is_ok_and(|x| x.cli_id() == id.to_ascii_lowercase()))
                        .ok_or_else(|| usage(format!("no rule found with hash {id}")))?
                }
                None => build_rule(rule)?,
            };
            ctx.call(v0::Request {
                sg_rule_del: Some(v0::SgRuleDelReq { sg_id: sg.clone(), rule }),
                ..req()
            })?;
        }
        RuleCmd::List { sg } => {
            let r = ctx.call(v0::Request { sg_rule_list: Some(sg.clone()), ..req() })?;
            if ctx.human() {
                r.sg_rule_list.iter().for_each(|r| println!("{}", rule_line(r)));
            }
        }
    }
    Ok(())
}

/// `sg member …`.
fn member(ctx: &Ctx, cmd: &MemberCmd) -> Result<(), Failure> {
    match cmd {
        MemberCmd::Add { sg, ip } => {
            ctx.call(v0::Request {
                sg_member_add: Some(v0::SgMemberAddReq { sg_id: sg.clone(), member: ip.clone() }),
                ..req()
            })?;
        }
        MemberCmd::Del { sg, ip } => {
            ctx.call(v0::Request {
                sg_member_del: Some(v0::SgMemberDelReq { sg_id: sg.clone(), member: ip.clone() }),
                ..req()
            })?;
        }
        MemberCmd::List { sg } => {
            let r = ctx.call(v0::Request { sg_member_list: Some(sg.clone()), ..req() })?;
            if ctx.human() {
                r.sg_member_list.iter().for_each(|m| println!("{m}"));
            }
        }
    }
    Ok(())
}

pub(crate) fn proto_number(p: &str) -> Result<i32, Failure> {
    Ok(match p.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmp6" | "icmpv6" => 58,
        "all" => -1,
        n => n.parse().map_err(|_| usage(format!("invalid --ip-proto {p:?}")))?,
    })
}

pub(crate) fn build_rule(a: &RuleArgs) -> Result<v0::Rule, Failure> {
    let proto = proto_number(a.ip_proto.as_deref().ok_or_else(|| usage("--ip-proto is required"))?)?;
    let (ps, pe) = match (a.port, a.port_start, a.port_end) {
        (Some(p), _, _) => (Some(p), Some(p)),
        (None, s, e) => (s, e),
    };
    if (proto == 6 || proto == 17) && (ps.is_none() || pe.is_none()) {
        return Err(usage("tcp and udp rules need --port or --port-start and --port-end"));
    }
    let cidr = match &a.cidr {
        Some(c) => {
            let (addr, mask) =
                c.split_once('/').ok_or_else(|| usage(format!("invalid --cidr {c:?}, want ADDRESS/MASK")))?;
            let mask = mask.parse().map_err(|_| usage(format!("invalid mask in --cidr {c:?}")))?;
            Some(v0::Cidr { address: addr.to_string(), mask_size: mask })
        }
        None => None,
    };
    if cidr.is_none() && a.sg_members.is_none() {
        return Err(usage("one of --cidr or --sg-members is required"));
    }
    Ok(v0::Rule {
        direction: if a.dir == "out" { 1 } else { 0 },
        protocol: proto,
        port_start: ps,
        port_end: pe,
        cidr,
        security_group: a.sg_members.clone(),
    })
}
