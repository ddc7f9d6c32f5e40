//! The `butterfly` command line client (see the crate README for usage and
//! exit codes). [`run`] is the whole program; the binary only calls it.

mod app;
mod args;
mod ctx;
mod curve;
mod nic;
mod print;
mod request;
mod sg;
mod trace;
mod vni;

use args::{Cli, Cmd, Global};
use clap::Parser;
use ctx::{Ctx, Failure};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the daemon refused the request, or the command line is invalid
/// (Butterfly's single failure code).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the daemon could not be reached, timed out, or sent an
/// undecodable reply.
pub const EXIT_TRANSPORT: i32 = 2;

/// Runs one command, handing it to its family.
fn exec(ctx: &Ctx, cmd: &Cmd) -> Result<(), Failure> {
    match cmd {
        Cmd::Nic { cmd } => nic::exec(ctx, cmd),
        Cmd::Sg { cmd } => sg::exec(ctx, cmd),
        Cmd::Vni { cmd } => vni::exec(ctx, cmd),
        Cmd::Trace { cmd } => trace::exec(ctx, cmd),
        Cmd::Status => app::status(ctx),
        Cmd::Shutdown => app::shutdown(ctx),
        Cmd::Request { file, stdout } => request::request(ctx, file, *stdout),
        Cmd::CurveKeygen { file } => curve::keygen(file),
        Cmd::Dump => app::dump(ctx),
    }
}

/// Global options given in a later segment override earlier ones (as in Butterfly).
fn merge(into: &mut Global, g: &Global) {
    if g.endpoint.is_some() {
        into.endpoint.clone_from(&g.endpoint);
    }
    if g.timeout.is_some() {
        into.timeout = g.timeout;
    }
    if g.key.is_some() {
        into.key.clone_from(&g.key);
    }
    if g.curve_server_key.is_some() {
        into.curve_server_key.clone_from(&g.curve_server_key);
    }
    if g.curve_client_keys.is_some() {
        into.curve_client_keys.clone_from(&g.curve_client_keys);
    }
    into.verbose |= g.verbose;
    into.json |= g.json;
}

/// A command line ending in the word `help` (`butterfly nic add help`) asks for that
/// command's help, as Butterfly's CLI did: it becomes `--help`. Alone, `help` stays clap's
/// own sub-command.
fn help_word(seg: &[String]) -> Vec<String> {
    let mut v = seg.to_vec();
    if v.len() >= 2 && v.last().is_some_and(|a| a == "help") {
        if let Some(last) = v.last_mut() {
            *last = "--help".into();
        }
    }
    v
}

/// Runs the CLI with `args` (including the program name) and returns the
/// process exit code.
pub fn run(args: Vec<String>) -> i32 {
    let rest: Vec<String> = args.into_iter().skip(1).collect();
    let segments: Vec<Vec<String>> = rest.split(|a| a == "+").map(|s| s.to_vec()).collect();
    let mut parsed = Vec::new();
    let mut global = Global::default();
    for seg in &segments {
        let argv = std::iter::once("butterfly".to_string()).chain(help_word(seg));
        match Cli::try_parse_from(argv) {
            Ok(cli) => {
                merge(&mut global, &cli.global);
                parsed.push((seg.join(" "), cli.cmd));
            }
            Err(e) => {
                use clap::error::ErrorKind;
                let code = match e.kind() {
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EXIT_OK,
                    _ => EXIT_FAILED,
                };
                let _ = e.print();
                return code;
            }
        }
    }
    let client = match curve::make_client(&global) {
        Ok(c) => c,
        Err(f) => {
            eprintln!("{}", f.msg);
            return f.code;
        }
    };
    let ctx = Ctx { client, global };
    for (text, cmd) in &parsed {
        if let Err(f) = exec(&ctx, cmd) {
            eprintln!("{}", f.msg);
            if parsed.len() > 1 {
                eprintln!("error in command: {text}");
            }
            return f.code;
        }
    }
    EXIT_OK
}

#[cfg(test)]
mod help_word_tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_trailing_help_word_asks_for_the_commands_help() {
        assert_eq!(help_word(&words("nic add help")), words("nic add --help"));
        assert_eq!(help_word(&words("nic details help")), words("nic details --help"));
        assert_eq!(help_word(&words("help")), words("help"), "alone, clap's own help sub-command");
        assert_eq!(help_word(&words("nic add --id help --mac x")), words("nic add --id help --mac x"));
        for line in ["nic add help", "sg rule add help", "status help", "dump help"] {
            let argv = std::iter::once("butterfly".to_string()).chain(help_word(&words(line)));
            let e = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{line}");
        }
        let argv = ["butterfly", "sg", "rule", "add", "sg-1", "--ip-proto", "-1", "--cidr", "0.0.0.0/0"];
        assert!(Cli::try_parse_from(argv).is_ok(), "Butterfly's --ip-proto -1");
    }
}

#[cfg(test)]
mod global_option_tests {
    use super::*;

    #[test]
    fn a_curve_key_that_starts_with_a_dash_is_a_value() {
        let key = "-Fv.Zk$qW2<}XY#n@3/&aB]w:V[rE)y+hp!(0d^L";
        for argv in [
            vec!["butterfly", "--curve-server-key", key, "nic", "list"],
            vec!["butterfly", "nic", "list", "--curve-server-key", key],
        ] {
            let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            assert_eq!(cli.global.curve_server_key.as_deref(), Some(key), "{argv:?}");
        }
    }
}
