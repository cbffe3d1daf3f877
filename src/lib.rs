//! gemfilter: GemFilter (Shi et al. 2024) on llama.cpp.
//!
//! Data flows `cli → presets → engine → capture → select → pipeline → generate`; `tools/*`
//! call into that chain from outside. No llama.cpp FFI type appears outside `engine::ffi`.

pub mod app;
pub mod capture;
pub mod cli;
pub mod engine;
pub mod eval;
pub mod generate;
pub mod gguf_info;
pub mod messages;
pub mod pipeline;
pub mod presets;
pub mod prompt;
pub mod report;
pub mod run;
pub mod select;
pub mod tools;
