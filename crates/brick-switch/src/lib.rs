//! Layer-2 learning switch brick with bounded MAC table and time-based aging.
//!
//! Not implemented yet: see this crate's README.
