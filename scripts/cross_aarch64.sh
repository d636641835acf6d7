#!/usr/bin/env bash
# Cross-compile the C++ kernel for aarch64 (NEON) and run its test program under qemu-aarch64
# against golden outputs exported from this machine's (x86-64) build: the NEON results must
# equal the x86 float32 results within 1e-5.
#
#   scripts/cross_aarch64.sh [OUT_DIR]     (default build/native/golden)
#
# Needs g++-aarch64-linux-gnu and qemu-user (scripts/setup.sh installs both) and lmustream
# built for this machine (the golden files come from its kernel). The same check runs in the
# test suite: tests/kernel/test_native.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${1:-build/native/golden}
LOG_TAG=cross
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

for tool in aarch64-linux-gnu-g++ qemu-aarch64 make; do
    command -v "$tool" >/dev/null || { log "missing $tool: run scripts/setup.sh (apt: g++-aarch64-linux-gnu qemu-user make)"; exit 2; }
done
log "building csrc/ for aarch64 (static, NEON; no x86 flags anywhere in the build)"
make -s -C csrc/tests -j"$(nproc)" BUILD="$PWD/build/native/aarch64" CXX=aarch64-linux-gnu-g++ LDFLAGS=-static \
    "$PWD/build/native/aarch64/kernel_test"
file build/native/aarch64/kernel_test 2>/dev/null || true
log "exporting golden inputs and x86-64 outputs to $OUT"
"$PYTHON" -m tests.kernel.native golden "$OUT" >/dev/null
log "running the aarch64 test program under qemu-aarch64"
qemu-aarch64 build/native/aarch64/kernel_test unit "$OUT/plain.safetensors" "$OUT/spiking.safetensors" | grep -v '^ok'
qemu-aarch64 build/native/aarch64/kernel_test golden "$OUT"
