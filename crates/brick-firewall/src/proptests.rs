//! Property tests: printing round-trips, random input never panics, the compiled matcher
//! agrees with the naive reference model.

use std::net::IpAddr;

use proptest::prelude::*;

use crate::compile::{reference, CompiledRuleset};
use crate::rule::*;
use crate::wire::{Flow, Frag};
use crate::{AntiSpoof, AntiSpoofOptions, Firewall, FirewallConfig};

const TABLES: [&str; 3] = ["t1", "sg-2", "x.y_z"];

fn v4s() -> impl Strategy<Value = IpAddr> {
    // A small pool so that rules and flows overlap.
    prop_oneof![
        (0u8..4, 0u8..4).prop_map(|(a, b)| IpAddr::from([10, 0, a, b])),
        any::<[u8; 4]>().prop_map(IpAddr::from),
    ]
}

fn v6s() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u16..4).prop_map(|a| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, a])),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (v4s(), 0u8..=32).prop_map(|(a, l)| Cidr { addr: a, len: if l > 24 { 32 } else { l } }),
        (v6s(), 0u8..=128).prop_map(|(a, l)| Cidr { addr: a, len: if l > 100 { 128 } else { l } }),
    ]
}

fn addr_spec() -> impl Strategy<Value = AddrSpec> {
    prop_oneof![
        Just(AddrSpec::Any),
        proptest::collection::vec(cidr(), 1..4).prop_map(AddrSpec::List),
        (0..TABLES.len()).prop_map(|i| AddrSpec::Table(TABLES[i].into())),
    ]
}

fn port_range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        (0u16..6).prop_map(|p| PortRange { lo: p, hi: p }),
        (0u16..6, 0u16..4).prop_map(|(a, w)| PortRange { lo: a, hi: a + w }),
        any::<(u16, u16)>().prop_map(|(a, b)| PortRange { lo: a.min(b), hi: a.max(b) }),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(None), Just(Some(Family::Inet)), Just(Some(Family::Inet6))],
        prop_oneof![
            Just(None),
            Just(Some(6u8)),
            Just(Some(17)),
            Just(Some(1)),
            Just(Some(58)),
            any::<u8>().prop_map(Some)
        ],
        addr_spec(),
        addr_spec(),
        proptest::collection::vec(port_range(), 0..3),
        proptest::collection::vec(port_range(), 0..3),
        proptest::option::of((0u8..4, proptest::option::of(0u8..3))),
        any::<bool>(),
    )
        .prop_map(|(pass, inbound, quick, family, proto, fa, ta, fp, tp, icmp, keep)| {
            let proto = proto.map(Proto);
            let ports_ok = proto.is_some_and(Proto::has_ports);
            let icmp_ok = proto == Some(Proto::ICMP) || proto == Some(Proto::ICMP6);
            Rule {
                action: if pass { Action::Pass } else { Action::Block },
                direction: if inbound { Direction::In } else { Direction::Out },
                quick,
                family,
                proto,
                from: Endpoint { addr: fa, ports: if ports_ok { fp } else { Vec::new() } },
                to: Endpoint { addr: ta, ports: if ports_ok { tp } else { Vec::new() } },
                icmp: if icmp_ok { icmp.map(|(ty, code)| IcmpMatch { ty, code }) } else { None },
                keep_state: pass && keep,
            }
        })
}

fn ruleset() -> impl Strategy<Value = Ruleset> {
    (
        any::<(bool, bool)>(),
        proptest::collection::vec(proptest::collection::vec(cidr(), 0..5), TABLES.len()),
        proptest::collection::vec(rule(), 0..24),
    )
        .prop_map(|((di, dout), tables, rules)| Ruleset {
            default_in: if di { Action::Pass } else { Action::Block },
            default_out: if dout { Action::Pass } else { Action::Block },
            tables: tables
                .into_iter()
                .enumerate()
                .map(|(i, e)| Table { name: TABLES[i].into(), entries: e })
                .collect(),
            rules,
        })
}

fn addr_value(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn flow() -> impl Strategy<Value = Flow> {
    (
        any::<bool>(),
        prop_oneof![Just(6u8), Just(17), Just(1), Just(58), any::<u8>()],
        v4s(),
        v4s(),
        v6s(),
        v6s(),
        0u16..8,
        prop_oneof![0u16..8, any::<u16>()],
        0u8..4,
        0u8..3,
    )
        .prop_map(|(v6, proto, s4, d4, s6, d6, sport, dport, ty, code)| {
            let (src, dst) =
                if v6 { (addr_value(s6), addr_value(d6)) } else { (addr_value(s4), addr_value(d4)) };
            let icmp = proto == 1 || proto == 58;
            let ports = proto == 6 || proto == 17;
            Flow {
                v6,
                proto,
                src,
                dst,
                sport: if ports { sport } else { 0 },
                dport: if ports { dport } else { 0 },
                icmp_type: if icmp { ty } else { 0 },
                icmp_code: if icmp { code } else { 0 },
                frag: Frag::None,
                ..Flow::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rule_print_parse_round_trip(r in rule()) {
        let text = r.to_string();
        let back: Rule = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(back, r);
    }

    #[test]
    fn ruleset_print_parse_round_trip(rs in ruleset()) {
        let text = rs.to_string();
        let back = Ruleset::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(back, rs);
    }

    /// The compiled matcher decides exactly like the naive in-order model.
    #[test]
    fn compiled_matches_reference(rs in ruleset(), flows in proptest::collection::vec(flow(), 1..32)) {
        let c = CompiledRuleset::new(rs.clone()).unwrap();
        for f in flows {
            for dir in [Direction::In, Direction::Out] {
                let want = reference::decide(&rs, dir, &f);
                let got = c.decide(dir, &f);
                prop_assert_eq!(got.rule.map(|r| r as usize), want, "{:?} {:?}", dir, f);
                let action = want.map_or(rs.default_for(dir), |i| rs.rules[i].action);
                prop_assert_eq!(got.action, action);
            }
        }
    }

    #[test]
    fn random_rule_text_never_panics(s in "\\PC{0,80}") {
        let _ = s.parse::<Rule>();
        let _ = Ruleset::parse(&s);
    }

    #[test]
    fn token_soup_never_panics(words in proptest::collection::vec(prop_oneof![
        Just("pass"), Just("block"), Just("in"), Just("out"), Just("quick"), Just("inet"), Just("inet6"),
        Just("proto"), Just("tcp"), Just("icmp"), Just("from"), Just("to"), Just("any"), Just("port"),
        Just("{"), Just("}"), Just(","), Just("<t>"), Just("10.0.0.1/8"), Just("::1"), Just("22:80"),
        Just("keep"), Just("no"), Just("state"), Just("icmp-type"), Just("code"), Just("3"), Just("table"),
        Just("set"), Just("default"), Just("all"), Just("#"), Just("\n"), Just("99999"), Just("<"), Just(">"),
    ], 0..16)) {
        let text = words.join(" ");
        let _ = Ruleset::parse(&text);
        let _ = text.parse::<Rule>();
    }

    #[test]
    fn random_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), Just(0x8100), any::<u16>()], ip_first in prop_oneof![Just(0x45u8), Just(0x60), any::<u8>()]) {
        let mut b = bytes;
        if b.len() >= 15 {
            b[12..14].copy_from_slice(&ethertype.to_be_bytes());
            b[14] = ip_first;
        }
        let mut fw = Firewall::with_ruleset(FirewallConfig { max_connections: 8, max_fragments: 8, ..FirewallConfig::default() },
            CompiledRuleset::parse("pass in all keep state\npass out all keep state\n").unwrap());
        let _ = fw.filter(&b, Direction::In, 1);
        let _ = fw.filter(&b, Direction::Out, 2);
        let mac = [b.get(6).copied().unwrap_or(0), 0, 0, 0, 0, 0];
        let a = AntiSpoof::new(mac, &["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()], AntiSpoofOptions::default()).unwrap();
        let _ = a.check(&b);
        let _ = crate::conntrack::ConnTable::decode(&b, 0);
    }

    /// The key the firewall's burst path reads in place, to look ahead, is the parsed flow's
    /// for TCP and UDP over IPv4 (with options too) and IPv6, and none for anything else.
    #[test]
    fn keys_read_in_place_are_the_parsed_flows(
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), sp in any::<u16>(), dp in any::<u16>(),
        kind in 0usize..7, options in 0usize..3,
    ) {
        use crate::conntrack::FlowKey;
        use crate::wire::testpkt::*;
        let (s4, d4) = ([src[0], src[1], src[2], src[3]], [dst[0], dst[1], dst[2], dst[3]]);
        let mut frame = match kind {
            0 => tcp4(s4, d4, sp, dp, 1, 2, crate::wire::TCP_SYN),
            1 => udp4(s4, d4, sp, dp, b"abc"),
            2 => udp6(src, dst, sp, dp, b"abc"),
            3 => tcp6(src, dst, sp, dp, 1, crate::wire::TCP_SYN),
            4 => udp4_fragments(s4, d4, sp, dp, &[0; 40], 7, 16)[0].clone(),
            5 => ping4(s4, d4, sp, false),
            _ => sctp4(s4, d4, sp, dp, 1),
        };
        if kind < 2 && options > 0 {
            // IPv4 options (NOPs) move the ports further in.
            let len = frame[14] & 0x0f;
            frame[14] = 0x40 | (len + options as u8);
            for _ in 0..options * 4 {
                frame.insert(34, 1);
            }
            let total = u16::from_be_bytes([frame[16], frame[17]]) + options as u16 * 4;
            frame[16..18].copy_from_slice(&total.to_be_bytes());
        }
        let parsed = match crate::wire::parse_frame(&frame) {
            Ok(crate::wire::Parsed::Ip(f)) => f,
            other => panic!("{other:?}"),
        };
        let expected = (kind < 4).then(|| FlowKey::of(&parsed).0);
        prop_assert_eq!(FlowKey::of_frame_in_place(&frame), expected);
    }

    /// Valid packets with one byte changed (headers included) never panic either.
    #[test]
    fn mutated_packets_never_panic(which in 0usize..4, pos in any::<prop::sample::Index>(), val in any::<u8>(), cut in any::<prop::sample::Index>()) {
        use crate::wire::testpkt::*;
        let mut p = match which {
            0 => tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 3, 4, crate::wire::TCP_SYN),
            1 => udp6([0xfd; 16], [0xfe; 16], 1, 2, b"abcdefgh"),
            2 => icmp4_error([1, 1, 1, 1], [10, 0, 0, 1], 3, 3, &udp4([10, 0, 0, 1], [2, 2, 2, 2], 1, 2, b"x")),
            _ => udp4_fragments([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, &[0; 40], 1, 16)[1].clone(),
        };
        let i = pos.index(p.len());
        p[i] = val;
        p.truncate(cut.index(p.len() + 1));
        let mut fw = Firewall::with_ruleset(FirewallConfig::default(), CompiledRuleset::parse("pass out all\n").unwrap());
        let _ = fw.filter(&p, Direction::Out, 1);
        let _ = fw.filter(&p, Direction::In, 1);
        let a = AntiSpoof::new(MAC_A, &[], AntiSpoofOptions::default()).unwrap();
        let _ = a.check(&p);
    }
}
