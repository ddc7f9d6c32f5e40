//! `butterfly nic …`.

use crate::args::*;
use crate::ctx::*;
use crate::print::*;
use butterfly_api::pb::message_v0 as v0;
use butterfly_api::text;

/// Runs one `nic` command.
pub(crate) fn exec(ctx: &Ctx, cmd: &NicCmd) -> Result<(), Failure> {
    match cmd {
        NicCmd::Add(a) => add(ctx, a)?,
        NicCmd::Update(u) => {
            ctx.call(v0::Request {
                nic_update: Some(v0::NicUpdateReq {
                    id: u.id.clone(),
                    ip_anti_spoof: u.enable_antispoof,
                    ip: clear_marker(&u.ip),
                    security_group: clear_marker(&u.sg),
                    packet_trace: u.packet_trace,
                    packet_trace_path: u.trace_path.clone(),
                    link_local: clear_marker(&u.link_local),
                }),
                ..req()
            })?;
        }
        NicCmd::Del { ids } => {
            ctx.call_many(ids.iter().map(|i| v0::Request { nic_del: Some(i.clone()), ..req() }).collect())?;
        }
        NicCmd::List => {
            let r = ctx.call(v0::Request { nic_list: Some(true), ..req() })?;
            if ctx.human() {
                r.nic_list.iter().for_each(|n| println!("{n}"));
            }
        }
        NicCmd::Details { id } => {
            let r = ctx.call(v0::Request { nic_details: Some(id.clone().unwrap_or_default()), ..req() })?;
            if ctx.human() {
                for (i, n) in r.nic_details.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    print_nic(n);
                }
            }
        }
        NicCmd::Stats { id } => {
            let r = ctx.call(v0::Request { nic_stats: Some(id.clone()), ..req() })?;
            if ctx.human() {
                let s = r.nic_stats.unwrap_or_default();
                println!("in: {}\nout: {}", s.r#in, s.out);
                if let Some(b) = &s.bench {
                    print_bench(b);
                }
            }
        }
        NicCmd::Export { id, file } => export(ctx, id, file)?,
        NicCmd::Import { id, file } => import(ctx, id, file)?,
        NicCmd::Sg { cmd } => sg(ctx, cmd)?,
    }
    Ok(())
}

/// `nic add`: tells when the NIC replaced one with the same id.
fn add(ctx: &Ctx, a: &NicAdd) -> Result<(), Failure> {
    if a.trace_path.is_some() && a.packet_trace != Some(true) {
        return Err(usage("--trace-path needs --packet-trace true"));
    }
    let nic_type = a.nic_type.as_deref().and_then(v0::nic::Type::from_str_name).map(|t| t as i32);
    let nic = v0::Nic {
        id: a.id.clone(),
        mac: a.mac.clone(),
        vni: a.vni,
        ip: a.ip.clone(),
        security_group: a.sg.clone(),
        ip_anti_spoof: Some(a.enable_antispoof),
        bypass_filtering: Some(a.bypass_filtering),
        r#type: nic_type,
        packet_trace: a.packet_trace,
        packet_trace_path: a.trace_path.clone(),
        btype: a.btype.clone(),
        dip: a.dip.clone(),
        dmac: a.dmac.clone(),
        link_local: a.link_local.clone(),
        vhost_user_client: a.vhost_client.then_some(true),
        ..Default::default()
    };
    // Butterfly's nic_add replaces a NIC with the same id, and its reply does
    // not say so: ask for the list in the same request (served in order, with
    // nothing in between) to tell the user.
    let r = ctx.call_many_opt(
        vec![v0::Request { nic_list: Some(true), ..req() }, v0::Request { nic_add: Some(nic), ..req() }],
        false,
    )?;
    let replaced = r[0].nic_list.contains(&a.id);
    if ctx.global.json {
        if let Ok(v) = text::message_to_json("MessageV0.Response", &r[1]) {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    } else {
        println!("{}", r[1].nic_add.as_ref().and_then(|n| n.path.clone()).unwrap_or_default());
    }
    if replaced {
        eprintln!(
            "NIC {} existed and was replaced: created again, with new counters and no connections",
            a.id
        );
    }
    Ok(())
}

/// `nic export`: the NIC's firewall state, to a file or stdout.
fn export(ctx: &Ctx, id: &str, file: &str) -> Result<(), Failure> {
    let r = ctx.call(v0::Request { nic_export: Some(id.to_string()), ..req() })?;
    let data = r.nic_export.and_then(|e| e.fw_data).and_then(|f| f.data).unwrap_or_default();
    let written = if file == "-" {
        std::io::Write::write_all(&mut std::io::stdout().lock(), &data)
    } else {
        std::fs::write(file, &data)
    };
    written.map_err(|e| usage(format!("cannot write {file}: {e}")))?;
    Ok(())
}

/// `nic import`: firewall state from a file or stdin.
fn import(ctx: &Ctx, id: &str, file: &str) -> Result<(), Failure> {
    let data = if file == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut v).map(|_| v)
    } else {
        std::fs::read(file)
    }
    .map_err(|e| usage(format!("cannot read {file}: {e}")))?;
    let import = v0::NicImportReq { id: Some(id.to_string()), data: Some(data) };
    let r = ctx.call(v0::Request { nic_import: Some(import), ..req() })?;
    if ctx.human() {
        let done = r.nic_import.unwrap_or_default();
        println!("imported: {}\nskipped: {}", done.imported(), done.skipped());
    }
    Ok(())
}

/// `nic sg`: a NIC's security groups, read then written whole.
fn sg(ctx: &Ctx, cmd: &NicSgCmd) -> Result<(), Failure> {
    match cmd {
        NicSgCmd::List { nic } => {
            let sgs = nic_sgs(ctx, nic)?;
            if ctx.human() {
                sgs.iter().for_each(|s| println!("{s}"));
            }
        }
        NicSgCmd::Add { nic, sgs } => {
            let mut cur = nic_sgs(ctx, nic)?;
            let before = cur.clone();
            cur.extend(sgs.iter().cloned());
            cur.sort();
            cur.dedup();
            if cur != before {
                set_nic_sgs(ctx, nic, cur)?;
            }
        }
        NicSgCmd::Del { nic, sgs } => {
            let cur = nic_sgs(ctx, nic)?;
            let new: Vec<String> = cur.iter().filter(|s| !sgs.contains(s)).cloned().collect();
            if new != cur {
                set_nic_sgs(ctx, nic, new)?;
            }
        }
        NicSgCmd::Set { nic, sgs } => set_nic_sgs(ctx, nic, sgs.clone())?,
    }
    Ok(())
}

pub(crate) fn nic_sgs(ctx: &Ctx, nic: &str) -> Result<Vec<String>, Failure> {
    let r = ctx.call(v0::Request { nic_details: Some(nic.to_string()), ..req() })?;
    Ok(r.nic_details.first().map(|n| n.security_group.clone()).unwrap_or_default())
}

pub(crate) fn set_nic_sgs(ctx: &Ctx, nic: &str, sgs: Vec<String>) -> Result<(), Failure> {
    let sgs = if sgs.is_empty() { vec![String::new()] } else { sgs };
    ctx.call(v0::Request {
        nic_update: Some(v0::NicUpdateReq { id: nic.to_string(), security_group: sgs, ..Default::default() }),
        ..req()
    })?;
    Ok(())
}

pub(crate) fn clear_marker(v: &[String]) -> Vec<String> {
    if v.len() == 1 && v[0] == "-e" {
        vec![String::new()]
    } else {
        v.to_vec()
    }
}
