//! Property tests: arbitrary sequences of buffer operations never panic and keep the packet's
//! invariants (headroom + data + tailroom = capacity; failed operations change nothing).

use brick_core::{Packet, PacketPool, PoolConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Prepend(usize),
    Pull(usize),
    Append(usize),
    Truncate(usize),
    SetData(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..400).prop_map(Op::Prepend),
        (0usize..400).prop_map(Op::Pull),
        (0usize..3000).prop_map(Op::Append),
        (0usize..3000).prop_map(Op::Truncate),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::SetData),
    ]
}

proptest! {
    #[test]
    fn buffer_operations_keep_invariants(init in proptest::collection::vec(any::<u8>(), 0..200),
                                         ops in proptest::collection::vec(op(), 0..40)) {
        let pool = PacketPool::new(PoolConfig { count: 2, headroom: 128, data_room: 512 }).unwrap();
        let mut p = pool.alloc_from(&init).unwrap();
        // A model of the data, updated only when an operation succeeds.
        let mut model = init.clone();
        for op in ops {
            let before = p.data().to_vec();
            match op {
                Op::Prepend(n) => match p.prepend(n) {
                    Ok(front) => { front.fill(0xee); let mut m = vec![0xee; n]; m.extend(&model); model = m; }
                    Err(_) => prop_assert_eq!(p.data(), &before[..]),
                },
                Op::Pull(n) => match p.pull(n) {
                    Ok(()) => { model.drain(..n); }
                    Err(_) => prop_assert_eq!(p.data(), &before[..]),
                },
                Op::Append(n) => match p.append(n) {
                    Ok(tail) => { tail.fill(0xaa); model.extend(std::iter::repeat_n(0xaa, n)); }
                    Err(_) => prop_assert_eq!(p.data(), &before[..]),
                },
                Op::Truncate(n) => { p.truncate(n); model.truncate(n); }
                Op::SetData(d) => if p.set_data(&d).is_ok() { model = d; } else { prop_assert_eq!(p.data(), &before[..]) },
            }
            prop_assert_eq!(p.headroom() + p.len() + p.tailroom(), p.capacity());
            prop_assert_eq!(p.data(), &model[..]);
        }
        drop(p);
        prop_assert_eq!(pool.available(), 2);
    }

    #[test]
    fn heap_packets_round_trip(data in proptest::collection::vec(any::<u8>(), 0..2000), tail in 0usize..100) {
        let p = Packet::from_slice_with_tailroom(&data, tail);
        prop_assert_eq!(p.data(), &data[..]);
        prop_assert_eq!(p.tailroom(), tail);
        prop_assert!(!p.is_pooled());
    }
}
