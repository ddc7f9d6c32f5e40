//! `butterfly request FILE`.

use crate::ctx::*;
use butterfly_api::text;

/// `request FILE`: sends requests written in protobuf text, prints the reply if asked.
pub(crate) fn request(ctx: &Ctx, file: &str, stdout: bool) -> Result<(), Failure> {
    let content = std::fs::read_to_string(file).map_err(|e| usage(format!("cannot read {file}: {e}")))?;
    let msgs = text::parse_request(&content).map_err(|e| usage(format!("{file}: {e}")))?;
    let reply = ctx.send(&msgs)?;
    if stdout || ctx.global.json {
        let out = if ctx.global.json { text::to_json(&reply) } else { text::to_text(&reply) };
        print!("{}", out.map_err(|e| usage(e.to_string()))?);
        if ctx.global.json {
            println!();
        }
    }
    for m in &reply.messages {
        if m.error.is_some() {
            return Err(usage("error in response"));
        }
        if m.message_0.as_ref().and_then(|m| m.response.as_ref()).is_some_and(|r| !r.status.status) {
            return Err(usage("error in response (status false)"));
        }
    }
    Ok(())
}
