//! Network namespaces: the mirror lives in a named one (`/run/netns/NAME`, as `ip netns`
//! makes them), where FRR runs too.

use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

/// The file of a named namespace.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// A namespace name `ip netns` would refuse, or one that would leave `/run/netns`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    /// Empty or longer than 64 characters.
    #[error("{0:?}: a namespace name has 1 to 64 characters")]
    Length(String),
    /// `.`, `..`, or a character other than letters, digits, `-`, `_` and `.`.
    #[error("{0:?}: use letters, digits, '-', '_' and '.'")]
    Characters(String),
}

/// Checks a namespace name: what `ip netns` accepts, without path tricks.
pub fn check_name(name: &str) -> Result<(), BadName> {
    if name.is_empty() || name.len() > 64 {
        return Err(BadName::Length(name.to_string()));
    }
    if name == "." || name == ".." || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(BadName::Characters(name.to_string()));
    }
    Ok(())
}

/// Creates namespace `name` with `ip netns add` unless it exists (loopback brought up).
pub fn ensure(name: &str) -> io::Result<()> {
    check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if path(name).exists() {
        return Ok(());
    }
    let run = |args: &[&str]| -> io::Result<()> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run `ip`: {e} (install iproute2)")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    run(&["netns", "add", name])?;
    run(&["-n", name, "link", "set", "lo", "up"])
}

/// Runs `f` on a short-lived thread that entered namespace `name`, and returns its result.
/// Sockets made by `f` stay in that namespace for their whole life, whatever thread uses
/// them later; the caller's own thread never changes namespace.
pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let file = std::fs::File::open(path(name))
        .map_err(|e| io::Error::new(e.kind(), format!("namespace {name}: {e}")))?;
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            // SAFETY: setns(2) on a file descriptor we own and keep open for the call; it
            // changes the network namespace of this thread only (CLONE_NEWNET is allowed in
            // a multi-threaded process), a thread that ends right after `f`.
            // `sockets_made_in_a_namespace_stay_there` checks it.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["butterfly-evpn", "h1e", "a.b_c"] {
            assert_eq!(check_name(ok), Ok(()));
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(run_in("../etc", || ()).is_err());
    }
}
