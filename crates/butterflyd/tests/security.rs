//! The API's security through the real daemon and the real `butterfly` CLI: CURVE
//! (`--curve-keys`, `--curve-clients`) and Butterfly's pre-shared key (`-k`). A client
//! without the right keys is told why, quickly, and changes nothing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// `butterfly ARGS` against `endpoint`, with a 5 s timeout: (exit code, stdout, stderr, time).
fn cli(endpoint: &str, args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let t = Instant::now();
    let out: Output =
        Command::new(cli_path()).args(["-e", endpoint, "-t", "5000"]).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t.elapsed(),
    )
}

/// `butterfly curve-keygen FILE`: the public key it prints and the file's two keys.
fn keygen(file: &Path) -> String {
    let out = Command::new(cli_path()).args(["curve-keygen", file.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let text = std::fs::read_to_string(file).unwrap();
    assert_eq!(text.lines().next(), Some(public.as_str()), "the file starts with the public key");
    assert_eq!(text.lines().count(), 2, "public then secret key");
    let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key pair is readable by its owner only");
    public
}

#[test]
fn curve_serves_authorised_clients_and_refuses_the_others_clearly() {
    let keys = tempfile::tempdir().unwrap();
    let (server, client, other) =
        (keys.path().join("server.keys"), keys.path().join("client.keys"), keys.path().join("other.keys"));
    let spub = keygen(&server);
    let cpub = keygen(&client);
    keygen(&other);
    // keygen never overwrites a key pair.
    let again = Command::new(cli_path()).args(["curve-keygen", server.to_str().unwrap()]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("cannot create"));
    assert!(std::fs::read_to_string(&server).unwrap().starts_with(&spub), "the pair is unchanged");
    let clients = keys.path().join("clients");
    std::fs::write(&clients, format!("# the orchestrator\n{cpub}\n")).unwrap();

    let curve = butterfly_api::CurveClient {
        server_key: butterfly_api::transport::curve_key(&spub).unwrap(),
        public_key: butterfly_api::transport::curve_key(&cpub).unwrap(),
        secret_key: {
            let text = std::fs::read_to_string(&client).unwrap();
            butterfly_api::transport::curve_key(text.lines().nth(1).unwrap()).unwrap()
        },
    };
    let security = Security {
        cli: vec![
            "--curve-server-key".into(),
            spub.clone(),
            "--curve-client-keys".into(),
            client.display().to_string(),
        ],
        key: None,
        curve: Some(curve),
    };
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let d = Daemon::start_secured(
        tempfile::tempdir().unwrap(),
        None,
        endpoint.clone(),
        &[
            "--no-state",
            "--curve-keys",
            server.to_str().unwrap(),
            "--curve-clients",
            clients.to_str().unwrap(),
        ],
        security,
    );
    d.ok(&["nic", "add", "--id", "vm1", "--mac", "52:54:00:00:00:01", "--vni", "7"]);
    assert_eq!(d.ok(&["nic", "list"]), "vm1\n");

    let add = ["nic", "add", "--id", "intruder", "--mac", "52:54:00:00:00:66", "--vni", "7"];
    // A client whose key is not authorised.
    let mut args = vec!["--curve-server-key", &spub, "--curve-client-keys", other.to_str().unwrap()];
    args.extend(add);
    let (code, _, err, took) = cli(&endpoint, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refused this client's CURVE key"), "{err}");
    assert!(err.contains("not among the daemon's authorised clients"), "{err}");
    assert!(took < Duration::from_secs(4), "said at once, not after the timeout: {took:?}");
    // A client that does not use CURVE.
    let (code, _, err, took) = cli(&endpoint, &add);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--curve-server-key"), "{err}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // A client that gives the wrong server key (its own public key).
    let mut args = vec!["--curve-server-key", &cpub, "--curve-client-keys", client.to_str().unwrap()];
    args.extend(add);
    let (code, _, err, took) = cli(&endpoint, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("security handshake") && err.contains("--curve-server-key"), "{err}");
    assert!(took < Duration::from_secs(4), "{took:?}");

    assert_eq!(d.ok(&["nic", "list"]), "vm1\n", "none of them changed anything");
    let (code, log, _) = d.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("is not authorised"), "the daemon logs the refused client: {log}");
}

#[test]
fn butterfly_encryption_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    // base64 of the 32 bytes 0, 1, …, 31; a second key is every byte + 1.
    let key = dir.path().join("api.key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n").unwrap();
    let security = Security {
        cli: vec!["-k".into(), key.display().to_string()],
        key: Some(butterfly_api::crypto::Key::load(&key).unwrap()),
        curve: None,
    };
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let d = Daemon::start_secured(
        tempfile::tempdir().unwrap(),
        None,
        endpoint.clone(),
        &["--no-state", "-k", key.to_str().unwrap()],
        security,
    );
    // The whole CLI works encrypted: add, list, details, security groups, status.
    let path =
        d.ok(&["nic", "add", "--id", "vm1", "--mac", "52:54:00:00:00:01", "--vni", "7", "--ip", "10.7.0.1"]);
    assert!(path.contains("qemu-vhost-vm1"), "{path}");
    d.ok(&["sg", "add", "sg-1", "+", "nic", "sg", "add", "vm1", "sg-1"]);
    assert!(d.ok(&["nic", "details", "vm1"]).contains("sg: sg-1"));
    assert!(d.ok(&["status"]).contains("fw-vm1"));

    let add = ["nic", "add", "--id", "intruder", "--mac", "52:54:00:00:00:66", "--vni", "7"];
    // Without the key: the daemon rejects clear requests, and the CLI says what to do.
    let (code, _, err, _) = cli(&endpoint, &add);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("REJECTED") && err.contains("give its key with -k"), "{err}");
    // With another key: the daemon cannot decrypt.
    let mut args = vec!["-k", wrong.to_str().unwrap()];
    args.extend(add);
    let (code, _, err, _) = cli(&endpoint, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Encrypted message error: REJECTED") && err.contains("-k the daemon's key"),
        "{err}"
    );
    assert_eq!(d.ok(&["nic", "list"]), "vm1\n", "nothing changed");

    // A daemon without a key refuses encrypted requests, and the CLI says so.
    let plain = Daemon::start(&["--no-state"]);
    let mut args = vec!["-k", key.to_str().unwrap()];
    args.extend(add);
    let (code, _, err, _) = cli(&plain.endpoint, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("REJECTED") && err.contains("leave out -k"), "{err}");
    assert_eq!(plain.ok(&["nic", "list"]), "");
    let (code, log, _) = d.stop();
    assert_eq!(code, 0, "{log}");
}
