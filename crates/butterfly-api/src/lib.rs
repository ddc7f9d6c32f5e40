//! tmp
pub mod pb {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
    pub mod proto {
        include!(concat!(env!("OUT_DIR"), "/proto.rs"));
    }
}
