//! Opening a DPDK port, stage by stage: the port found (by id, name or devargs), its
//! capabilities checked, a mempool for its receive queues, its configuration (offloads the
//! port has and the brick wants), its queues, then its MTU, start and promiscuous mode.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::sync::atomic::Ordering;

use dpdk_sys as sys;

use super::eal::{port_err, rte_errno, strerror, POOL_SEQ};
use super::{DpdkConfig, DpdkError, Eal, OffloadCaps, PortSpec};
use crate::NicError;

/// The port `spec` names: checked, found by name, or probed from devargs.
pub(super) fn resolve_port(eal: &Eal, spec: &PortSpec) -> Result<u16, NicError> {
    Ok(match spec {
        PortSpec::Id(id) => {
            eal.check_port(*id)?;
            *id
        }
        PortSpec::Name(n) => eal.port_by_name(n)?,
        PortSpec::Devargs(d) => eal.probe(d)?,
    })
}

/// The port's device information, once it is known to have `queues` queue pairs.
pub(super) fn device_info(id: u16, queues: u16) -> Result<sys::rte_eth_dev_info, NicError> {
    // SAFETY: rte_eth_dev_info is plain data filled by the call.
    let mut info: sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
    // SAFETY: valid port (checked), valid out pointer.
    let rc = unsafe { sys::rte_eth_dev_info_get(id, &mut info) };
    if rc != 0 {
        return Err(port_err(id, "rte_eth_dev_info_get", rc).into());
    }
    if queues > info.max_rx_queues || queues > info.max_tx_queues {
        return Err(DpdkError::Config(format!(
            "port {id} supports {} rx / {} tx queues, {queues} asked",
            info.max_rx_queues, info.max_tx_queues
        ))
        .into());
    }
    Ok(info)
}

/// The port's device name.
pub(super) fn port_name(id: u16) -> String {
    let mut name_buf = [0 as c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: the buffer has RTE_ETH_NAME_MAX_LEN bytes, as the call requires.
    unsafe { sys::rte_eth_dev_get_name_by_port(id, name_buf.as_mut_ptr()) };
    // SAFETY: NUL-terminated by the call (or zeroed).
    unsafe { CStr::from_ptr(name_buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// The mbuf pool of the port's receive queues, on the port's NUMA socket (returned too).
pub(super) fn create_mempool(id: u16, cfg: &DpdkConfig) -> Result<(*mut sys::rte_mempool, i32), NicError> {
    let pool_name = format!("brick_mp{}_{}", id, POOL_SEQ.fetch_add(1, Ordering::Relaxed));
    let cpool = CString::new(pool_name.clone()).map_err(|_| DpdkError::BadArgument(pool_name.clone()))?;
    // SAFETY: plain query.
    let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
    // SAFETY: valid name; sizes are checked by DPDK, which returns NULL on failure.
    let mempool = unsafe {
        sys::rte_pktmbuf_pool_create(
            cpool.as_ptr(),
            cfg.mbufs,
            cfg.mbuf_cache.min(512),
            0,
            sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
            socket,
        )
    };
    if mempool.is_null() {
        let e = rte_errno();
        return Err(DpdkError::Mempool { name: pool_name, msg: strerror(e) }.into());
    }
    Ok((mempool, socket))
}

/// A port's configuration and the TX offloads it turns on.
pub(super) struct PortConf {
    pub(super) eth: sys::rte_eth_conf,
    pub(super) tx_l4_csum: bool,
    pub(super) tx_tso: bool,
}

/// RX checksum checks the port has; TX L4 checksums and TSO when asked for and the port has
/// them all.
pub(super) fn port_conf(caps: OffloadCaps, cfg: &DpdkConfig) -> PortConf {
    use sys::offload::*;
    // SAFETY: rte_eth_conf is plain data; all-zero is DPDK's "defaults".
    let mut conf: sys::rte_eth_conf = unsafe { std::mem::zeroed() };
    conf.rxmode.offloads = caps.rx_raw & (RX_IPV4_CKSUM | RX_TCP_CKSUM | RX_UDP_CKSUM);
    let tx_l4_csum =
        cfg.tx_checksum_offload && caps.tx_raw & (TX_TCP_CKSUM | TX_UDP_CKSUM) == TX_TCP_CKSUM | TX_UDP_CKSUM;
    if tx_l4_csum {
        conf.txmode.offloads = TX_TCP_CKSUM | TX_UDP_CKSUM;
    }
    let tso_caps = TX_TCP_TSO | TX_MULTI_SEGS | TX_IPV4_CKSUM | TX_TCP_CKSUM;
    let tx_tso = cfg.tx_tso_offload && caps.tx_raw & tso_caps == tso_caps;
    if tx_tso {
        conf.txmode.offloads |= tso_caps;
    }
    PortConf { eth: conf, tx_l4_csum, tx_tso }
}

/// Configures the port with `conf` and sets up its queue pairs (receiving into `mempool`).
pub(super) fn configure_queues(
    id: u16,
    cfg: &DpdkConfig,
    info: &sys::rte_eth_dev_info,
    conf: &sys::rte_eth_conf,
    socket: i32,
    mempool: *mut sys::rte_mempool,
) -> Result<(), NicError> {
    // SAFETY: valid port and conf.
    let rc = unsafe { sys::rte_eth_dev_configure(id, cfg.queues, cfg.queues, conf) };
    if rc != 0 {
        return Err(port_err(id, "rte_eth_dev_configure", rc).into());
    }
    let (mut nrx, mut ntx) = (cfg.rx_desc, cfg.tx_desc);
    // SAFETY: valid port and out pointers.
    unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrx, &mut ntx) };
    for q in 0..cfg.queues {
        let mut rxconf = info.default_rxconf;
        rxconf.offloads = conf.rxmode.offloads;
        // SAFETY: valid port, queue index < configured queues, pool created by the caller.
        let rc = unsafe { sys::rte_eth_rx_queue_setup(id, q, nrx, socket as u32, &rxconf, mempool) };
        if rc != 0 {
            return Err(port_err(id, "rte_eth_rx_queue_setup", rc).into());
        }
        let mut txconf = info.default_txconf;
        txconf.offloads = conf.txmode.offloads;
        // SAFETY: as above.
        let rc = unsafe { sys::rte_eth_tx_queue_setup(id, q, ntx, socket as u32, &txconf) };
        if rc != 0 {
            return Err(port_err(id, "rte_eth_tx_queue_setup", rc).into());
        }
    }
    Ok(())
}

/// Sets the configured MTU, starts the port, and turns promiscuous mode on if asked.
pub(super) fn start_port(id: u16, cfg: &DpdkConfig) -> Result<(), NicError> {
    if let Some(mtu) = cfg.mtu {
        // SAFETY: valid port.
        let rc = unsafe { sys::rte_eth_dev_set_mtu(id, mtu) };
        if rc != 0 {
            return Err(port_err(id, "rte_eth_dev_set_mtu", rc).into());
        }
    }
    // SAFETY: configured port.
    let rc = unsafe { sys::rte_eth_dev_start(id) };
    if rc != 0 {
        return Err(port_err(id, "rte_eth_dev_start", rc).into());
    }
    if cfg.promiscuous {
        // Not every driver has it (ENOTSUP is fine).
        // SAFETY: started port.
        unsafe { sys::rte_eth_promiscuous_enable(id) };
    }
    Ok(())
}
