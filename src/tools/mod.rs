//! Subcommands beside the default mode.
pub mod bench;
pub mod calibrate;
pub mod gguf_writer;
pub mod layers;
pub mod niah;
pub mod synth;
