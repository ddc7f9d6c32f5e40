//! Tests against independent Python implementations (pyzmq, protobuf compiled
//! by grpcio-tools, `cryptography`). They need the venv made by
//! scripts/setup-python.sh and fail with a clear message without it.

mod common;
use butterfly_api::crypto::{self, Key};
use butterfly_api::{DispatchConfig, ServerConfig};
use std::process::Command;

fn py_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py")
}

fn run_py(args: &[&str]) -> String {
    let out = Command::new(common::python()).current_dir(py_dir()).args(args).output().expect("python runs");
    assert!(
        out.status.success(),
        "python {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn crypto_matches_python_vectors() {
    let vectors: serde_json::Value = serde_json::from_str(&run_py(&["crypto_vectors.py", "gen"])).unwrap();
    let vectors = vectors.as_array().unwrap();
    assert!(vectors.len() >= 9);
    for v in vectors {
        let key = Key::from_base64(v["key"].as_str().unwrap()).unwrap();
        let iv: [u8; 16] = unhex(v["iv"].as_str().unwrap()).try_into().unwrap();
        let payload = unhex(v["payload"].as_str().unwrap());
        let blob = unhex(v["blob"].as_str().unwrap());
        assert_eq!(
            crypto::encrypt_with_iv(&key, &iv, &payload),
            blob,
            "our encryption differs from Python's"
        );
        assert_eq!(crypto::decrypt(&key, &blob).unwrap(), payload);
    }
    // And Python decrypts what we encrypt with a random IV.
    let key = Key::generate().unwrap();
    let payload = b"hello butterfly, a payload longer than one block".to_vec();
    let blob = crypto::encrypt(&key, &payload).unwrap();
    let got = run_py(&["crypto_vectors.py", "decrypt", &key.to_base64(), &hex(&blob)]);
    assert_eq!(got.trim(), hex(&payload));
}

#[test]
fn python_client_speaks_our_wire_format() {
    let clear = common::spawn_default();
    let key = Key::generate().unwrap();
    let keyed = common::spawn(ServerConfig {
        endpoint: "tcp://127.0.0.1:0".into(),
        dispatch: DispatchConfig { key: Some(key.clone()), ..Default::default() },
        ..Default::default()
    });
    let proto_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    let out = run_py(&[
        "wire_client.py",
        proto_dir.to_str().unwrap(),
        clear.endpoint(),
        &key.to_base64(),
        keyed.endpoint(),
    ]);
    assert!(out.starts_with("OK "), "{out}");
    let n: usize = out[3..].trim().parse().unwrap();
    assert_eq!(n, 27, "every check of the script must run");
    let (h, _) = clear.stop().unwrap();
    assert_eq!(h.model.nic_ids(), vec!["py-nic".to_string()]);
}
