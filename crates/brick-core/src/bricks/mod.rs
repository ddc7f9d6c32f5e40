//! Small general-purpose bricks.

mod diode;
mod dipole;
mod flipped;
mod hub;
mod nop;
pub mod ping;
mod rxtx;
mod sniffer;

pub use diode::Diode;
pub use dipole::UserDipole;
pub use flipped::Flipped;
pub use hub::Hub;
pub use nop::Nop;
pub use ping::{PingConfig, PingResponder, PingSender, PingSnapshot, PingStats};
pub use rxtx::RxTx;
pub use sniffer::{Sniffer, SnifferDirection};
