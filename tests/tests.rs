//! One test binary: CLI behaviour, engine internals and end-to-end answers on the real
//! SmolLM2-135M (CPU). Model-loading tests run on one thread (`--test-threads=1` in make test)
//! because llama.cpp's backend is process-wide.

// Test code converts JSON numbers (u64, f64) to indices.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

mod util;

mod architecture;
mod cache_logging;
mod chat_options;
mod cli_errors;
mod compat;
mod conversation;
mod draft;
mod end_to_end;
mod engine;
mod gguf_fuzz;
mod hostile;
mod hostile_files;
mod hostile_peers;
mod interactive;
mod niah;
mod options;
mod record;
mod rpc;
mod self_calibration;
mod server;
mod server_page;
