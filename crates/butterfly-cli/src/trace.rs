//! `butterfly trace …`: the daemon's packet traces (butterfly-rs): `trace underlay on|off`.

use crate::args::*;
use crate::ctx::*;
use butterfly_api::pb::message_v0 as v0;

/// Runs one `trace` command.
pub(crate) fn exec(ctx: &Ctx, cmd: &TraceCmd) -> Result<(), Failure> {
    match cmd {
        TraceCmd::Underlay { state, path } => {
            let enabled = match state {
                OnOff::On => true,
                OnOff::Off if path.is_some() => return Err(usage("--path is for `trace underlay on`")),
                OnOff::Off => false,
            };
            let r = ctx.call(underlay_req(Some(enabled), path.clone()))?;
            if ctx.human() {
                println!("{}", underlay_line(r.underlay_trace.as_ref()));
            }
        }
    }
    Ok(())
}

/// An underlay_trace request: switch (`enabled` set) or only ask (`None`).
pub(crate) fn underlay_req(enabled: Option<bool>, path: Option<String>) -> v0::Request {
    v0::Request { underlay_trace: Some(v0::UnderlayTrace { enabled, path }), ..req() }
}

/// "underlay trace: on (PATH)" or "underlay trace: off".
pub(crate) fn underlay_line(t: Option<&v0::UnderlayTrace>) -> String {
    match t {
        Some(v0::UnderlayTrace { enabled: Some(true), path }) => {
            format!("underlay trace: on ({})", path.as_deref().unwrap_or("?"))
        }
        _ => "underlay trace: off".to_string(),
    }
}
