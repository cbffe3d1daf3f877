#!/usr/bin/env bash
# Compile-and-link check of the consumer CUDA build, `cargo build --release --features cuda`, on a
# Linux machine with no GPU and no CUDA toolkit. nvcc, the CUDA runtime and cuBLAS come from
# NVIDIA's PyPI wheels (the CUDA 13 family, pinned below), installed with pip and arranged into a
# toolkit layout that CMake's FindCUDAToolkit accepts. The binary is built for one GPU
# architecture and is never run on a GPU here; `--help` is run against the wheels' libraries.
# Measured on the 2-core development machine (shared with other builds, JOBS=1, sm_89, CUDA 13.5
# wheels): 130 min wall, a 263 MB binary (36 MB of it the .nv_fatbin of CUDA kernels).
#
#   scripts/cuda-build-check.sh [ARCH]     # ARCH = CMAKE_CUDA_ARCHITECTURES, default 89 (RTX 4090)
#
# Builds the repository's HEAD (a `git archive` copy; the work tree and its target/ are not
# touched). Environment, all optional:
#   CUDA_CHECK_DIR    wheels, toolkit layout, source copy, target dir (default /tmp/gemfilter-cuda)
#   CUDA_CHECK_SRC    where the source copy goes (default $CUDA_CHECK_DIR/src; recreated each run)
#   CARGO_TARGET_DIR  (default $CUDA_CHECK_DIR/target)
#   JOBS              cargo jobs and CMake parallel level (default 1: a 2-core machine shared with others)
#
# Two things differ from a machine with NVIDIA's toolkit installed, because no wheel has them:
#  - libcuda.so (the driver): a driver-less stub, generated from the wheel's cuda.h (every driver
#    API entry point, returning CUDA_ERROR_STUB_LIBRARY, SONAME libcuda.so.1), the same kind of
#    file as the toolkit's lib64/stubs/libcuda.so; only for linking.
#  - cuBLAS static archives: on Linux vendor/llama-cpp-sys-2/build.rs links cudart_static,
#    cublas_static, cublasLt_static and culibos. The wheels have libcudart_static.a and
#    libculibos.a, but cuBLAS only as libcublas.so.13/libcublasLt.so.13, so empty
#    libcublas_static.a/libcublasLt_static.a satisfy rustc and cuBLAS is linked from the shared
#    libraries (-C link-arg). Without them the build stops after llama.cpp's CMake build with
#      error: could not find native static library `cublas_static`, perhaps an -L flag is missing?
#    The binary built here therefore needs libcublas.so.13 at run time; a toolkit build embeds it.
set -euo pipefail

ARCH="${1:-89}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${CUDA_CHECK_DIR:-/tmp/gemfilter-cuda}"
SRC="${CUDA_CHECK_SRC:-$WORK/src}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WORK/target}"
JOBS="${JOBS:-1}"
WHEELS="$WORK/wheels"
ROOT="$WHEELS/nvidia/cu13"   # the toolkit root: bin/nvcc, include/, lib/ (lib64 -> lib), nvvm/
FAKE="$WORK/fake-static"     # the two empty cuBLAS archives, kept outside the toolkit root
RUNLIB="$WORK/run-lib"       # libcuda.so.1 -> the stub, only for running --help here

# The CUDA 13 wheels (nvidia-cuda-nvcc pulls nvidia-nvvm, nvidia-cuda-crt and nvidia-cuda-runtime).
WHEEL_PINS=(
  nvidia-cuda-nvcc==13.5.37
  nvidia-cuda-runtime==13.5.37
  nvidia-cuda-crt==13.5.37
  nvidia-nvvm==13.5.37
  nvidia-cuda-cccl==13.3.5.0.6
  nvidia-cuda-culibos==13.4.92
  nvidia-cublas==13.10.0.20
)

say() { printf '== %s\n' "$*"; }

# --- prerequisites: the same Debian packages `make deps` installs, plus Rust, git, python3 + pip
if ! command -v cmake >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
  say "installing cmake and libclang-dev (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake libclang-dev >/dev/null
fi
for tool in cargo rustc git gcc g++ python3 ar; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is required" >&2; exit 1; }
done
python3 -m pip --version >/dev/null 2>&1 || { echo "error: python3 -m pip is required" >&2; exit 1; }

# --- 1. the wheels (one pip call: `pip install --target` does not merge into an existing nvidia/)
mkdir -p "$WORK"
if [ ! -f "$WHEELS/.installed" ] || [ "$(cat "$WHEELS/.installed")" != "${WHEEL_PINS[*]}" ]; then
  say "pip install --target $WHEELS ${WHEEL_PINS[*]}"
  rm -rf "$WHEELS"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-cache-dir --target "$WHEELS" "${WHEEL_PINS[@]}"
  echo "${WHEEL_PINS[*]}" >"$WHEELS/.installed"
fi
[ -x "$ROOT/bin/nvcc" ] || { echo "error: $ROOT/bin/nvcc missing after pip install" >&2; exit 1; }

# --- 2. the toolkit layout
say "assembling the toolkit layout in $ROOT"
cd "$ROOT/lib"
for lib in cudart cublas cublasLt; do ln -sfn "lib$lib.so.13" "lib$lib.so"; done  # find_library wants the unversioned name
ln -sfn lib "$ROOT/lib64"
mkdir -p stubs "$FAKE" "$RUNLIB"
python3 - "$ROOT/include/cuda.h" >"$WORK/libcuda_stub.c" <<'EOF'
# Every driver API function cuda.h declares, under both its public (versioned, e.g. cuMemAlloc_v2)
# and its internal name, as a function returning CUDA_ERROR_STUB_LIBRARY (34).
import re, subprocess, sys
names = set()
for extra in ([], ["-D__CUDA_API_VERSION_INTERNAL"]):
    out = subprocess.run(["gcc", "-E", "-P", "-x", "c", *extra, sys.argv[1]],
                         capture_output=True, text=True, check=True).stdout
    names |= set(re.findall(r"\bCUresult\s+(cu\w+)\s*\(", out))
print("/* driver-less libcuda stub, for linking only */")
for name in sorted(names):
    print(f"int {name}(void) {{ return 34; }}")
EOF
gcc -shared -fPIC -O2 -Wl,-soname,libcuda.so.1 -o stubs/libcuda.so "$WORK/libcuda_stub.c"
ln -sfn "$ROOT/lib/stubs/libcuda.so" "$RUNLIB/libcuda.so.1"
for lib in cublas_static cublasLt_static; do rm -f "$FAKE/lib$lib.a"; ar rcs "$FAKE/lib$lib.a"; done
say "nvcc: $("$ROOT/bin/nvcc" --version | tail -2 | head -1)"
say "libcuda stub: $(nm -D --defined-only "$ROOT/lib/stubs/libcuda.so" | wc -l) symbols"

# --- 3. the source: HEAD of this repository, copied (a marker guards the rm -rf)
if [ -e "$SRC" ] && [ ! -f "$SRC/.cuda-build-check" ]; then
  echo "error: $SRC exists and was not made by this script" >&2; exit 1
fi
rm -rf "$SRC" && mkdir -p "$SRC"
git -C "$REPO" archive HEAD | tar -x -C "$SRC"
touch "$SRC/.cuda-build-check"
say "source: $(git -C "$REPO" rev-parse --short HEAD) in $SRC"

# --- 4. the build
HOST="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS_VAR="CARGO_TARGET_$(echo "$HOST" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS   # they would replace .cargo/config.toml's target-cpu
export CUDA_PATH="$ROOT" CUDAToolkit_ROOT="$ROOT" CUDACXX="$ROOT/bin/nvcc" PATH="$ROOT/bin:$PATH"
export CUDA_LIBRARY_PATH="$ROOT"          # find_cuda_helper (build.rs) adds $ROOT/lib64 and lib64/stubs
export CMAKE_CUDA_ARCHITECTURES="$ARCH"   # build.rs forwards CMAKE_* variables to CMake
export CARGO_BUILD_JOBS="$JOBS" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS"
# Merged with .cargo/config.toml's rustflags (an environment array is appended, not a replacement).
export "$RUSTFLAGS_VAR=-L native=$FAKE -L native=$ROOT/lib -C link-arg=-lcublas -C link-arg=-lcublasLt"
say "cargo build --release --features cuda  (CMAKE_CUDA_ARCHITECTURES=$ARCH, $JOBS job(s), target $CARGO_TARGET_DIR)"
cd "$SRC"
start=$(date +%s)
nice -n 19 cargo build --release --features cuda
secs=$(( $(date +%s) - start ))
say "build wall time: $((secs / 60)) min $((secs % 60)) s with $JOBS job(s)"

# --- 5. the binary
BIN="$CARGO_TARGET_DIR/release/gemfilter"
say "binary: $(du -h "$BIN" | cut -f1) $BIN"
say "NEEDED: $(readelf -d "$BIN" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
say "ggml CUDA backend linked in: $(nm -C "$BIN" | grep -c ' T ggml_backend_cuda_') ggml_backend_cuda_* functions"
say "ldd with the wheels' libraries and the stub on LD_LIBRARY_PATH:"
LD_LIBRARY_PATH="$ROOT/lib:$RUNLIB" ldd "$BIN"
# Without a driver the loader stops at libcuda.so.1; with the stub, ggml prints
# "failed to initialize CUDA: CUDA driver is a stub library" and runs on the CPU.
say "gemfilter --help:"
LD_LIBRARY_PATH="$ROOT/lib:$RUNLIB" "$BIN" --help | sed -n 1,5p
say "ok: the CUDA build compiles and links (sm_$ARCH)"
