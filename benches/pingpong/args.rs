//! The command line both vhost tools share: `--flag value` pairs, of which the switch's two
//! sockets, the guests' stations, the frame size and the CPU are common to both.

use std::path::PathBuf;

use super::frame::{self, Station};

/// The options common to both tools, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Guests {
    /// The switch's sockets for vm1 and vm2.
    pub socks: [PathBuf; 2],
    /// The guest behind the first socket.
    pub vm1: Station,
    /// The guest behind the second socket.
    pub vm2: Station,
    /// Frame length on the wire, without FCS.
    pub frame_len: usize,
    /// The CPU to run on.
    pub cpu: Option<usize>,
}

/// The message for `flag value` when the value is not `what`.
pub fn bad(flag: &str, val: &str, what: &str) -> String {
    format!("{flag} {val}: not {what}")
}

/// Reads `--flag value` pairs from `it`: the common ones (`--sock1`, `--sock2`, `--mac1`,
/// `--mac2`, `--ip1`, `--ip2`, `--frame` with FCS as RFC 2544 counts it, `--cpu`) here, any
/// other through `own` (true: it took it; false: unknown). `-h` or `--help` is the error
/// "help".
pub fn parse(
    mut it: impl Iterator<Item = String>,
    mut own: impl FnMut(&str, &str) -> Result<bool, String>,
) -> Result<Guests, String> {
    let mut socks = [None, None];
    let mut vm1 = Station { mac: [2, 0, 0, 0, 0, 1], ip: [198, 18, 0, 1] };
    let mut vm2 = Station { mac: [2, 0, 0, 0, 0, 2], ip: [198, 18, 0, 2] };
    let (mut frame_len, mut cpu) = (64usize, None);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err("help".into());
        }
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| bad(&flag, &val, what);
        let mac = || frame::parse_mac(&val).ok_or_else(|| bad("a MAC address"));
        let ip = || super::parse_ipv4(&val).ok_or_else(|| bad("an IPv4 address"));
        match flag.as_str() {
            "--sock1" => socks[0] = Some(PathBuf::from(&val)),
            "--sock2" => socks[1] = Some(PathBuf::from(&val)),
            "--mac1" => vm1.mac = mac()?,
            "--mac2" => vm2.mac = mac()?,
            "--ip1" => vm1.ip = ip()?,
            "--ip2" => vm2.ip = ip()?,
            "--frame" => frame_len = val.parse().map_err(|_| bad("a size"))?,
            "--cpu" => cpu = Some(val.parse().map_err(|_| bad("a CPU number"))?),
            _ if own(&flag, &val)? => {}
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let [Some(s1), Some(s2)] = socks else {
        return Err("--sock1 and --sock2 are needed".into());
    };
    if !(frame::MIN_LEN + 4..=frame::MAX_LEN + 4).contains(&frame_len) {
        return Err(format!("--frame {frame_len}: outside {}..={}", frame::MIN_LEN + 4, frame::MAX_LEN + 4));
    }
    Ok(Guests { socks: [s1, s2], vm1, vm2, frame_len: frame_len - 4, cpu })
}
