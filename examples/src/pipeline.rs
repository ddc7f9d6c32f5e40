//! A small graph on its own thread, with traffic: a generator feeds a hub that floods to two
//! sinks, one behind a sniffer that records a pcap file. After a few seconds it prints every
//! brick's counters and the graph in DOT.
//!
//! ```text
//! cargo run --release -p butterfly-examples --bin pipeline -- [SECONDS] [PCAP]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brick_core::bricks::{Hub, RxTx, Sniffer, SnifferDirection};
use brick_core::{Burst, Graph, PacketPool, Runner, RunnerConfig, Side};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = match args.next() {
        Some(s) => s.parse().map_err(|_| format!("SECONDS must be a whole number, got {s:?}"))?,
        None => 3,
    };
    let pcap =
        args.next().unwrap_or_else(|| std::env::temp_dir().join("pipeline.pcap").display().to_string());

    let pool = PacketPool::with_count(4096)?;
    let mut g = Graph::new("pipeline");

    // A generator of small UDP-like frames, at most one burst per poll round.
    let gen_pool = pool.clone();
    let mut seq = 0u32;
    let generator = g.add(
        "generator",
        RxTx::new(
            Side::East,
            move |b: &mut Burst| {
                while b.room() > 0 {
                    let Some(mut p) = gen_pool.alloc() else { break };
                    let frame = p.append(60).expect("fits");
                    frame[..12].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1]);
                    frame[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
                    frame[14..18].copy_from_slice(&seq.to_be_bytes());
                    seq = seq.wrapping_add(1);
                    let _ = b.push(p);
                }
            },
            |b: &mut Burst| b.clear(),
        ),
    )?;
    let hub = g.add("hub", Hub::new(pool.clone()))?;
    let sniffer = g.add("sniffer", Sniffer::to_file(&pcap, SnifferDirection::Both)?)?;
    let counted = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let mut sinks = Vec::new();
    for (i, c) in counted.iter().enumerate() {
        let c = Arc::clone(c);
        let sink = g.add(
            format!("sink{i}"),
            RxTx::new(
                Side::West,
                |_: &mut Burst| {},
                move |b: &mut Burst| {
                    c.fetch_add(b.len() as u64, Ordering::Relaxed);
                    b.clear();
                },
            ),
        )?;
        sinks.push(sink);
    }
    g.link(generator, hub)?;
    g.link(hub, sinks[0])?;
    g.link(hub, sniffer)?;
    g.link(sniffer, sinks[1])?;
    // The sniffer records every packet, so keep its file small: stop the generator early.
    let runner = Runner::spawn(g, RunnerConfig { name: "pipeline".into(), ..Default::default() })?;
    let handle = runner.handle();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    // Live change: take the sniffer out after 20 ms; traffic to sink0 goes on.
    handle.exec(move |g| -> Result<(), brick_core::GraphError> {
        g.remove(sniffer)?;
        Ok(())
    })??;
    std::thread::sleep(Duration::from_secs(seconds).saturating_sub(start.elapsed()));
    let g = runner.stop()?;
    let elapsed = start.elapsed().as_secs_f64();

    println!("ran {elapsed:.1} s; pcap of the first 20 ms in {pcap}");
    for id in g.ids() {
        let st = g.stats(id)?;
        let name = g.name_of(id)?;
        let pkts = st.side(Side::West).pkts_in.get() + st.side(Side::East).pkts_in.get();
        let out = st.side(Side::West).pkts_out.get() + st.side(Side::East).pkts_out.get();
        let cpp = st.cycles_per_packet().map_or("-".to_string(), |c| format!("{c:.1}"));
        println!("{name:>10}: in {pkts:>10} out {out:>10} drops {:>6} cycles/pkt {cpp}", st.total_drops());
    }
    let total = counted[0].load(Ordering::Relaxed);
    println!("sink0 received {total} packets ({:.2} Mpps)", total as f64 / elapsed / 1e6);
    println!("\n{}", g.to_dot());
    Ok(())
}
