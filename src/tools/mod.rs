//! Subcommands beside the default mode.
#[path = "/tmp/synth_stub.rs"]
pub mod synth;
pub mod layers;
