//! Tools beside the default mode: end-to-end benchmarks and random-weight models.
pub mod bench;
pub mod rpc_server;
pub mod synth;
pub mod turns;
