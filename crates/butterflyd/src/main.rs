//! The butterflyd daemon: composes the bricks into Butterfly's VM/VXLAN topology.
//!
//! Not implemented yet.

fn main() {
    eprintln!("butterflyd is not implemented yet");
    std::process::exit(1);
}
