# gemfilter: `make demo` answers a question about a long bundled document with GemFilter and
# with the full prompt; `make test` runs the test suite. Both install what is missing.

MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
CARGO ?= cargo
BIN := target/release/gemfilter

.PHONY: all deps models test-models build demo test bench clean-models reference compat

all: build

# Debian packages the llama.cpp build needs (cmake, libclang for bindgen).
deps:
	@if ! command -v cmake >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then \
		echo "installing cmake and libclang-dev (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake libclang-dev >/dev/null; \
	fi
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "error: cargo (Rust) is required"; exit 1; }

# The demo needs SmolLM2 only; the tests also use Gemma-3-270M and Qwen2.5-Coder-0.5B.
models:
	@scripts/fetch-models.sh smollm2

test-models:
	@scripts/fetch-models.sh smollm2 gemma3 qwen05 qwen15
	@python3 -c 'import openai' 2>/dev/null || python3 -m pip install --quiet openai
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (apt-get), for the server page's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# One build of llama.cpp (release profile) serves the binary, the tests and the benches.
build: deps
	$(CARGO) build --release

demo: build models
	@scripts/demo.sh $(MODEL)

# Lints first (release profile: they reuse the one llama.cpp build), then the whole suite.
test: build test-models reference
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO) test --release -- --test-threads=1

bench: build
	$(CARGO) bench --bench select

# llama.cpp's own llama-completion, built from the same llama.cpp source into .reference/ (about
# 8 to 25 minutes on 2 cores, once): the reference tests/compat.rs compares gemfilter against.
reference: deps
	@scripts/reference-llama.sh

# gemfilter --gem off against llama-completion, token for token (also part of `make test`).
compat: build test-models reference
	$(CARGO) test --release --test tests compat -- --test-threads=1
