//! One test binary: CLI behaviour, engine internals and end-to-end answers on the real
//! SmolLM2-135M (CPU). Model-loading tests run on one thread (`--test-threads=1` in make test)
//! because llama.cpp's backend is process-wide.

mod util;

mod cli_errors;
mod end_to_end;
mod engine;
mod gguf_fuzz;
mod hostile;
mod niah;
mod trust;
