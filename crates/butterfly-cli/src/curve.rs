//! Client keys and the connection: `curve-keygen`, and the client the global options ask for.

use crate::args::*;
use crate::ctx::*;
use butterfly_api::crypto::Key;
use butterfly_api::transport::{curve_key, Client, ClientConfig, CurveClient};
use std::time::Duration;

/// `curve-keygen FILE`: a CurveZMQ key pair, public key printed.
pub(crate) fn keygen(file: &str) -> Result<(), Failure> {
    let (public, secret) = butterfly_api::transport::curve_keypair()?;
    write_new_secret(file, &format!("{public}\n{secret}\n"))
        .map_err(|e| usage(format!("cannot create {file}: {e}")))?;
    println!("{public}");
    Ok(())
}

/// Creates `path` (never replacing a file) readable by its owner only, with `text`.
pub(crate) fn write_new_secret(path: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

pub(crate) fn read_arg_or_file(v: &str) -> String {
    match std::fs::read_to_string(v) {
        Ok(s) => s,
        Err(_) => v.to_string(),
    }
}

pub(crate) fn make_client(g: &Global) -> Result<Client, Failure> {
    let key = match &g.key {
        Some(path) => Some(Key::load(path).map_err(|e| usage(format!("cannot load encryption key: {e}")))?),
        None => None,
    };
    let curve = match &g.curve_server_key {
        Some(sk) => {
            let server_key = curve_key(read_arg_or_file(sk).trim()).map_err(|e| usage(e.to_string()))?;
            let (public, secret) = match &g.curve_client_keys {
                Some(f) => {
                    let t = std::fs::read_to_string(f).map_err(|e| usage(format!("cannot read {f}: {e}")))?;
                    let mut lines = t.lines().map(str::trim).filter(|l| !l.is_empty());
                    match (lines.next(), lines.next()) {
                        (Some(p), Some(s)) => (p.to_string(), s.to_string()),
                        _ => return Err(usage(format!("{f}: want two lines, public then secret key"))),
                    }
                }
                None => butterfly_api::transport::curve_keypair()?,
            };
            Some(CurveClient {
                server_key,
                public_key: curve_key(&public).map_err(|e| usage(e.to_string()))?,
                secret_key: curve_key(&secret).map_err(|e| usage(e.to_string()))?,
            })
        }
        None => None,
    };
    let timeout = match g.timeout.unwrap_or(5000) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    Ok(Client::new(ClientConfig {
        endpoint: g.endpoint.clone().unwrap_or_else(|| butterfly_api::DEFAULT_ENDPOINT.to_string()),
        timeout,
        key,
        curve,
    })?)
}
