//! `butterfly vni …`: how each VNI floods broadcast, unknown unicast and multicast.

use crate::args::*;
use crate::ctx::*;
use crate::print::*;
use butterfly_api::pb::message_v0 as v0;

/// Runs one `vni` command.
pub(crate) fn exec(ctx: &Ctx, cmd: &VniCmd) -> Result<(), Failure> {
    match cmd {
        VniCmd::Set(a) => set(ctx, a)?,
        VniCmd::Del { vnis } => {
            ctx.call_many(
                vnis.iter().map(|&v| vni_set_req(v, v0::vni_bum::Mode::Default, None, Vec::new())).collect(),
            )?;
        }
        VniCmd::Flood { cmd } => flood(ctx, cmd)?,
        VniCmd::Details { vni } => {
            let r = ctx.call(v0::Request { vni_details: Some(v0::VniDetailsReq { vni: *vni }), ..req() })?;
            if ctx.human() {
                for (i, v) in r.vni_details.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    print_vni(v);
                }
            }
        }
    }
    Ok(())
}

/// `vni set`: exactly one BUM mode.
fn set(ctx: &Ctx, a: &VniSetArgs) -> Result<(), Failure> {
    use v0::vni_bum::Mode;
    let multicast = a.multicast || a.group.is_some();
    let unicast = a.unicast || !a.flood.is_empty();
    let r = match (multicast, unicast, a.evpn, a.default_mode) {
        (true, false, false, false) => {
            vni_set_req(a.vni, Mode::Multicast, a.group.clone(), Vec::new())
        }
        (false, true, false, false) => vni_set_req(a.vni, Mode::Unicast, None, a.flood.clone()),
        (false, false, true, false) => vni_set_req(a.vni, Mode::Evpn, None, Vec::new()),
        (false, false, false, true) => vni_set_req(a.vni, Mode::Default, None, Vec::new()),
        _ => {
            return Err(usage(
                "vni set needs exactly one mode: --multicast [--group ADDR], --flood IP… (or --unicast), --evpn, or --default",
            ))
        }
    };
    ctx.call(r)?;
    Ok(())
}

/// `vni flood add|del`: edits the flood list of a VNI that floods by list.
fn flood(ctx: &Ctx, cmd: &VniFloodCmd) -> Result<(), Failure> {
    match cmd {
        VniFloodCmd::Add { vni, vteps } => {
            let mut flood = vni_flood(ctx, *vni)?;
            let before = flood.len();
            for t in vteps {
                if !flood.contains(t) {
                    flood.push(t.clone());
                }
            }
            if flood.len() != before {
                ctx.call(vni_set_req(*vni, v0::vni_bum::Mode::Unicast, None, flood))?;
            }
        }
        VniFloodCmd::Del { vni, vteps } => {
            let flood = vni_flood(ctx, *vni)?;
            let new: Vec<String> = flood.iter().filter(|f| !vteps.contains(f)).cloned().collect();
            if new != flood {
                ctx.call(vni_set_req(*vni, v0::vni_bum::Mode::Unicast, None, new))?;
            }
        }
    }
    Ok(())
}

pub(crate) fn vni_set_req(
    vni: u32,
    mode: v0::vni_bum::Mode,
    group: Option<String>,
    flood: Vec<String>,
) -> v0::Request {
    v0::Request {
        vni_set: Some(v0::VniBum { vni: Some(vni), mode: Some(mode as i32), group, flood }),
        ..req()
    }
}

/// The flood list of a VNI that floods by list (for `vni flood add|del`).
pub(crate) fn vni_flood(ctx: &Ctx, vni: u32) -> Result<Vec<String>, Failure> {
    let r = ctx.call_many_opt(
        vec![v0::Request { vni_details: Some(v0::VniDetailsReq { vni: Some(vni) }), ..req() }],
        false,
    )?;
    let st = r.first().and_then(|r| r.vni_details.first()).cloned().unwrap_or_default();
    if st.mode == Some(v0::vni_bum::Mode::Evpn as i32) {
        return Err(usage(format!(
            "VNI {vni} is in EVPN mode: its flood list comes from type-3 routes; `butterfly vni set {vni} --flood IP…` switches it to a list of its own"
        )));
    }
    if st.mode != Some(v0::vni_bum::Mode::Unicast as i32) {
        let group = st.group.map(|g| format!(" {g}")).unwrap_or_default();
        return Err(usage(format!(
            "VNI {vni} floods to its multicast group{group}; `butterfly vni set {vni} --flood IP…` switches it to a flood list"
        )));
    }
    Ok(st.flood)
}
