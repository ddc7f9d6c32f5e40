//! Super-frames and their GSO metadata come from VMs (TAP vnet headers, vhost-user): planning,
//! cutting and merging them back never panics, and every planned segment can be written.
#![no_main]
use brick_core::gso::{merge_header, TcpSegment, TcpSegmenter};
use brick_core::{GsoType, Meta, OffloadFlags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (ctl, frame) = data.split_at(6);
    let mut meta = Meta {
        gso_size: u16::from_be_bytes([ctl[0], ctl[1]]),
        gso_type: match ctl[2] % 4 {
            0 => GsoType::None,
            1 => GsoType::TcpV4,
            2 => GsoType::TcpV6,
            _ => GsoType::Udp,
        },
        csum_start: u16::from(ctl[3]),
        csum_offset: u16::from(ctl[4] % 32),
        ..Meta::default()
    };
    if ctl[5] & 1 != 0 {
        meta.offload.insert(OffloadFlags::CSUM_NEEDED);
    }
    if ctl[5] & 2 != 0 {
        meta.offload.insert(OffloadFlags::CSUM_VERIFIED);
    }
    if let Ok(plan) = TcpSegmenter::new(frame, &meta) {
        let mut out = vec![0u8; plan.max_segment_len()];
        let mut segs: Vec<Vec<u8>> = Vec::new(); // the first few, for the merge below
        for i in 0..plan.segment_count() {
            let n = plan.write_segment(frame, i, &mut out).expect("a planned segment fits max_segment_len");
            assert_eq!(n, plan.segment_len(i));
            if segs.len() < 4 {
                segs.push(out[..n].to_vec());
            }
        }
        // What we cut merges back (the GRO side) without panicking.
        if let Some(seg) = segs.first().and_then(|f| TcpSegment::parse(f, &Meta::default())) {
            let (mut prev, mut merged) = (seg, seg.payload);
            for s in &segs[1..] {
                match TcpSegment::parse(s, &Meta::default()) {
                    Some(n) if seg.follows(&segs[0], &prev, merged, &n, s) => {
                        merged += n.payload;
                        prev = n;
                    }
                    _ => break,
                }
            }
            let mut head = segs[0].clone();
            let _ = merge_header(&mut head, &seg, merged, prev.psh());
        }
    }
    // Two arbitrary frames arriving one after the other (the GRO side): parse, compare, merge.
    let cut = usize::from(ctl[4]).min(frame.len());
    let (a, b) = frame.split_at(cut);
    let plain = Meta::default();
    if let (Some(sa), Some(sb)) = (TcpSegment::parse(a, &plain), TcpSegment::parse(b, &plain)) {
        if sa.follows(a, &sa, sa.payload, &sb, b) {
            let mut head = a.to_vec();
            let _ = merge_header(&mut head, &sa, sa.payload + sb.payload, sb.psh());
        }
    }
    let _ = TcpSegment::parse(frame, &meta);
});
