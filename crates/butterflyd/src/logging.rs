//! Where the logs go: journald when it listens, else syslog (Butterfly's ident `butterfly`
//! and facility LOCAL0), and stderr — unless stderr already is the journal (a systemd
//! service's stderr), so that nothing is logged twice. `--no-syslog` means stderr only.
//!
//! The sinks are `tracing` layers from tracing-journald and syslog-tracing; the level
//! filter in front of them can be changed at run time (`app_config`).

use std::os::unix::fs::MetadataExt;

use tracing_subscriber::{prelude::*, reload, EnvFilter};

use crate::config::LogLevel;

/// Butterfly's syslog identity, also journald's `SYSLOG_IDENTIFIER`.
pub const IDENT: &str = "butterfly";

/// syslog's LOCAL0 facility number (Butterfly's facility), journald's `SYSLOG_FACILITY`.
pub const FACILITY_LOCAL0: u8 = 16;

/// The system log in use besides stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemLog {
    /// The systemd journal (its native protocol).
    Journald,
    /// syslog(3), through /dev/log.
    Syslog,
    /// None: `--no-syslog`, or neither journald nor a syslog daemon listens.
    None,
}

/// What [`init`] set up, for the start-up message.
#[derive(Debug, Clone, Copy)]
pub struct Sinks {
    /// The system log in use.
    pub system: SystemLog,
    /// Whether logs are also written to stderr.
    pub stderr: bool,
}

/// Installs the global subscriber and returns what it logs to and the function that
/// changes its level.
pub fn init(level: LogLevel, no_syslog: bool) -> (Sinks, crate::daemon::LogControl) {
    let (filter, reload) = reload::Layer::new(EnvFilter::new(level.directive()));
    let journald = if no_syslog {
        None
    } else {
        // Connecting sends an empty datagram: fails unless journald listens.
        tracing_journald::layer().ok().map(|l| {
            l.with_syslog_identifier(IDENT.to_string())
                .with_custom_fields([("SYSLOG_FACILITY", FACILITY_LOCAL0.to_string())])
        })
    };
    let syslog = if no_syslog || journald.is_some() || !syslog_listens() {
        None
    } else {
        let options = syslog_tracing::Options::LOG_PID
            | syslog_tracing::Options::LOG_CONS
            | syslog_tracing::Options::LOG_NDELAY;
        syslog_tracing::Syslog::new(c"butterfly", options, syslog_tracing::Facility::Local0)
    };
    let system = match (&journald, &syslog) {
        (Some(_), _) => SystemLog::Journald,
        (None, Some(_)) => SystemLog::Syslog,
        (None, None) => SystemLog::None,
    };
    // Under systemd, stderr goes to the journal already: no second copy there.
    let stderr = !(system == SystemLog::Journald && stderr_is_journal());
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr_layer =
        stderr.then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi));
    let syslog_layer = syslog.map(|w| {
        // syslog adds its own time stamp, identity and pid; the level is its severity.
        tracing_subscriber::fmt::layer().with_writer(w).with_ansi(false).without_time().with_level(false)
    });
    tracing_subscriber::registry().with(filter).with(journald).with(syslog_layer).with(stderr_layer).init();
    let control: crate::daemon::LogControl =
        Box::new(move |level: LogLevel| reload.modify(|f| *f = EnvFilter::new(level.directive())));
    (Sinks { system, stderr }, control)
}

/// True when a syslog daemon has its socket at /dev/log.
fn syslog_listens() -> bool {
    std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.connect("/dev/log")).is_ok()
}

/// True when stderr is the journal stream systemd gave this service (`JOURNAL_STREAM` holds
/// its device and inode, as sd_journal_stream_fd(3) describes).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    use std::os::fd::AsFd;
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else { return false };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_the_journal_only_when_journal_stream_names_it() {
        use std::os::fd::AsFd;
        let fd = std::io::stderr().as_fd().try_clone_to_owned().unwrap();
        let m = std::fs::File::from(fd).metadata().unwrap();
        // One environment for every test thread: no other test reads JOURNAL_STREAM.
        std::env::set_var("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
        assert!(stderr_is_journal());
        std::env::set_var("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino() + 1));
        assert!(!stderr_is_journal());
        std::env::set_var("JOURNAL_STREAM", "garbage");
        assert!(!stderr_is_journal());
        std::env::remove_var("JOURNAL_STREAM");
        assert!(!stderr_is_journal());
    }
}
