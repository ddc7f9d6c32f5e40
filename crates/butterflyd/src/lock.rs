//! One daemon per API endpoint and per state directory: each start takes an exclusive,
//! non-blocking `flock(2)` on a lock file for its endpoint and one in its state directory,
//! before touching anything else (underlay, sockets, saved state). A second daemon finds the
//! lock held and refuses to start with the first one's pid, endpoint and state directory
//! (written in the lock file). The kernel drops the lock when the process ends, however it
//! ends, so a crashed daemon never blocks the next start.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another butterflyd ({holder}) is running on {what}: stop it, or start this one with \
         another --endpoint and --state-dir (lock {})",
        path.display()
    )]
    Busy {
        /// What the lock protects ("the API endpoint tcp://…").
        what: String,
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote in it (pid, endpoint, state directory).
        holder: String,
    },
    /// The lock file cannot be created or locked.
    #[error("lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
    remove_on_drop: bool,
}

impl Lock {
    /// Takes the lock at `path` (creating the file and its directory), protecting `what`,
    /// and writes `about` (who holds it) into it. `remove_on_drop`: delete the file when
    /// released (lock files in a shared runtime directory), else leave it.
    pub fn acquire(path: &Path, what: &str, about: &str, remove_on_drop: bool) -> Result<Lock, LockError> {
        let io = |source| LockError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.split_whitespace().collect::<Vec<_>>().join(", ");
                return Err(LockError::Busy {
                    what: what.to_string(),
                    path: path.to_path_buf(),
                    holder: if holder.is_empty() { "pid unknown".into() } else { holder },
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(about.as_bytes()).map_err(io)?;
        Ok(Lock { file, path: path.to_path_buf(), remove_on_drop })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held, so no other daemon can have locked this file meanwhile.
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = rustix::fs::flock(&self.file, rustix::fs::FlockOperation::Unlock);
    }
}

/// The lock file of API endpoint `endpoint` in `dir`: the endpoint with every character
/// that is not a letter, digit, `.` or `-` replaced by `_`.
pub fn endpoint_lock_path(dir: &Path, endpoint: &str) -> PathBuf {
    let name: String = endpoint
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    dir.join(format!("api-{name}.lock"))
}

/// Whether `endpoint` names one fixed address (not a port the system picks, `:0` or `:*`),
/// so that two daemons giving it would collide.
pub fn endpoint_is_fixed(endpoint: &str) -> bool {
    !(endpoint.starts_with("tcp://") && (endpoint.ends_with(":0") || endpoint.ends_with(":*")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_released_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = endpoint_lock_path(dir.path(), "tcp://127.0.0.1:9999");
        assert_eq!(path.file_name().unwrap(), "api-tcp___127.0.0.1_9999.lock");
        let first = Lock::acquire(&path, "the API endpoint tcp://127.0.0.1:9999", "pid=42\nstate=/s\n", true)
            .unwrap();
        // flock locks belong to the open file: a second open in this process collides too.
        let e = Lock::acquire(&path, "the API endpoint tcp://127.0.0.1:9999", "pid=43\n", true).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("another butterflyd (pid=42, state=/s) is running on the API endpoint"),
            "{text}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "pid=42\nstate=/s\n", "the loser wrote nothing");
        drop(first);
        assert!(!path.exists(), "removed on release");
        let again = Lock::acquire(&path, "x", "pid=44\n", false).unwrap();
        drop(again);
        assert!(path.exists(), "kept when asked");
        assert!(Lock::acquire(&path, "x", "pid=45\n", false).is_ok());
    }

    #[test]
    fn ports_the_system_picks_are_not_fixed() {
        assert!(endpoint_is_fixed("tcp://127.0.0.1:9999"));
        assert!(endpoint_is_fixed("ipc:///run/butterfly/api.sock"));
        assert!(!endpoint_is_fixed("tcp://127.0.0.1:0"));
        assert!(!endpoint_is_fixed("tcp://*:*"));
    }
}
