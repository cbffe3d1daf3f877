//! gemfilter: GemFilter (Shi et al. 2024) on llama.cpp.
//!
//! `main` parses the flags (`cli`), `cli::resolve` turns them, the GGUF header and the presets
//! (`presets`) into typed settings once, and `app` runs the mode. A run flows
//! `run → pipeline → engine (filter pass, capture) → select → engine (re-run) → generate`;
//! `eval/*` (niah, layers, calibrate) and `tools/*` (bench, synth) call into that chain from
//! outside. Nothing below `cli` imports `cli`; no llama.cpp FFI type or `unsafe` appears outside
//! `engine::ffi`.

pub mod app;
pub mod capture;
pub mod cli;
pub mod completion;
pub mod conversation;
pub mod doc_state;
pub mod draft;
pub mod engine;
pub mod eval;
pub mod fsutil;
pub mod generate;
pub mod gguf_info;
pub mod log_file;
pub mod messages;
pub mod output_file;
pub mod pipeline;
pub mod presets;
pub mod prompt;
pub mod reasoning;
pub mod report;
pub mod run;
pub mod sanitize;
pub mod scoring;
pub mod select;
pub mod selector;
pub mod seq_state;
pub mod server;
pub mod settings;
pub mod tools;
