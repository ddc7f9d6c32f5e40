//! Whole-daemon commands: `status`, `shutdown`, `dump`.

use crate::ctx::*;
use crate::print::*;
use crate::vni::vni_set_req;
use butterfly_api::pb::message_v0 as v0;
use butterfly_api::text;
use std::time::Duration;

/// `status`: the daemon's dates, counters, VNIs and graph.
pub(crate) fn status(ctx: &Ctx) -> Result<(), Failure> {
    let r = ctx.call(v0::Request { app_status: Some(true), ..req() })?;
    // butterfly-rs daemons also say how each VNI floods; Butterfly's does not know.
    let vnis = ctx.try_call(
        v0::Request { vni_details: Some(v0::VniDetailsReq { vni: None }), ..req() },
        ctx.global.json,
    )?;
    let trace = ctx.try_call(crate::trace::underlay_req(None, None), ctx.global.json)?;
    if ctx.human() {
        let s = r.app_status.unwrap_or_default();
        let (start, now) = (s.start_date.unwrap_or(0), s.current_date.unwrap_or(0));
        println!(
            "start date: {} (up {})",
            date(start),
            humantime::format_duration(Duration::from_secs(now.saturating_sub(start)))
        );
        println!("current date: {}", date(now));
        println!("request counter: {}", s.request_counter.unwrap_or(0));
        for v in vnis.iter().flat_map(|r| &r.vni_details) {
            println!("{}", vni_line(v));
        }
        if let Some(t) = &trace {
            println!("{}", crate::trace::underlay_line(t.underlay_trace.as_ref()));
        }
        println!("dot graph: \n{}", s.graph_dot.unwrap_or_default());
    }
    Ok(())
}

/// `shutdown`.
pub(crate) fn shutdown(ctx: &Ctx) -> Result<(), Failure> {
    ctx.call(v0::Request { app_quit: Some(true), ..req() })?;
    Ok(())
}

/// `dump`: the requests that would rebuild the daemon's NICs, SGs and VNI settings.
pub(crate) fn dump(ctx: &Ctx) -> Result<(), Failure> {
    let r = ctx.call_many_opt(
        vec![
            v0::Request { nic_details: Some(String::new()), ..req() },
            v0::Request { sg_details: Some(String::new()), ..req() },
        ],
        false,
    )?;
    let mut reqs = Vec::new();
    for mut n in r[0].nic_details.clone() {
        n.path = None;
        reqs.push(v0::Request { nic_add: Some(n), ..req() });
    }
    for sg in r[1].sg_details.clone() {
        reqs.push(v0::Request { sg_add: Some(sg), ..req() });
    }
    // VNIs with a BUM mode of their own (butterfly-rs daemons only).
    let vnis =
        ctx.try_call(v0::Request { vni_details: Some(v0::VniDetailsReq { vni: None }), ..req() }, false)?;
    for v in vnis.iter().flat_map(|r| &r.vni_details).filter(|v| v.own == Some(true)) {
        let mode = v0::vni_bum::Mode::try_from(v.mode.unwrap_or(0)).unwrap_or(v0::vni_bum::Mode::Default);
        reqs.push(vni_set_req(v.vni.unwrap_or(0), mode, v.group.clone(), v.flood.clone()));
    }
    let msgs = wrap(reqs);
    let out = if ctx.global.json { text::to_json(&msgs).map(|s| s + "\n") } else { text::to_text(&msgs) };
    print!("{}", out.map_err(|e| usage(e.to_string()))?);
    Ok(())
}
