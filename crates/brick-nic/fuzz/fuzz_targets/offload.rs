//! Frames and virtio-net headers from a VM or the kernel: parsing and mapping never panic.
#![no_main]
use brick_core::Meta;
use brick_nic::offload::{complete_checksum, guess_l2_l3, locate_l4, parse_vnet, VnetHdr, VnetMeta, VNET_HDR_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (hdr, frame) = data.split_at(data.len().min(VNET_HDR_LEN));
    let mut m = Meta::default();
    if let Ok(h) = parse_vnet(hdr) {
        if h.apply_to(&mut m, frame.len()).is_ok() {
            let back = VnetHdr::from_meta(&m, frame).expect("accepted metadata maps back");
            let mut m2 = Meta::default();
            back.apply_to(&mut m2, frame.len()).expect("round trip");
        }
    }
    let _ = locate_l4(frame);
    guess_l2_l3(frame, &mut m);
    let mut f = frame.to_vec();
    if let Some(loc) = locate_l4(frame) {
        assert!(complete_checksum(&mut f, loc.l4_offset, loc.csum_offset()));
    }
});
