//! Subcommands beside the default mode.
pub mod gguf_writer;
pub mod layers;
pub mod synth;
