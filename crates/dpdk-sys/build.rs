//! Generates the bindings from Debian's DPDK headers and compiles the C shim. Everything
//! comes from `pkg-config libdpdk`: its cflags (include paths, `-include rte_config.h`,
//! `-march=...`) go to both bindgen and cc, its libs to the linker.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let lib = match pkg_config::Config::new().atleast_version("22.11").probe("libdpdk") {
        Ok(lib) => lib,
        Err(e) => panic!(
            "DPDK not found through pkg-config ({e}).\n\
             The `dpdk` feature needs Debian's DPDK 22.11 headers: run scripts/setup-brick-nic.sh\n\
             (apt-get install libdpdk-dev dpdk-dev libclang-dev clang pkg-config)."
        ),
    };

    // Every cflag pkg-config gives (not only -I): `-include rte_config.h` and `-march` matter.
    let mut args: Vec<String> = Vec::new();
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("run pkg-config --cflags libdpdk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = text.split_whitespace();
    while let Some(a) = it.next() {
        if a == "-include" {
            if let Some(f) = it.next() {
                args.push("-include".into());
                args.push(f.into());
            }
        } else {
            args.push(a.into());
        }
    }
    for p in &lib.include_paths {
        let a = format!("-I{}", p.display());
        if !args.contains(&a) {
            args.push(a);
        }
    }

    let mut build = cc::Build::new();
    build.file("csrc/shim.c").include("csrc").warnings(false).opt_level(3);
    let mut i = 0;
    while i < args.len() {
        if args[i] == "-include" && i + 1 < args.len() {
            build.flag("-include").flag(&args[i + 1]);
            i += 2;
            continue;
        }
        build.flag(&args[i]);
        i += 1;
    }
    build.compile("brick_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(&args)
        .clang_arg("-Icsrc")
        .allowlist_function("rte_eal_init")
        .allowlist_function("rte_eal_cleanup")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_lcore_count")
        .allowlist_function("rte_eth_.*")
        .allowlist_function("rte_dev_probe")
        .allowlist_function("rte_dev_remove")
        .allowlist_function("rte_vdev_init")
        .allowlist_function("rte_vdev_uninit")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_free")
        .allowlist_function("rte_thread_register")
        .allowlist_function("rte_thread_unregister")
        .allowlist_function("rte_mempool_avail_count")
        .allowlist_function("rte_mempool_in_use_count")
        .allowlist_function("brick_.*")
        .allowlist_type("rte_eth_.*")
        .allowlist_type("rte_ether_addr")
        .allowlist_type("brick_mbuf_view")
        .allowlist_type("brick_tx_desc")
        .allowlist_var("RTE_ETH_.*")
        .allowlist_var("RTE_MBUF_DEFAULT_.*")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .opaque_type("rte_mbuf")
        .opaque_type("rte_mempool")
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen over the DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(out).expect("write bindings");
}
