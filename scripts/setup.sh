#!/usr/bin/env bash
# Install everything lmustream needs, on a fresh Debian/Ubuntu machine or any machine with
# Python >= 3.10 and a C++17 compiler:
#   1. system packages (apt-get, as root or through sudo; skipped when already present),
#   2. PyTorch, pinned to the CPU wheel torch==2.13.0 (never a plain `torch`, which would pull
#      a multi-GB CUDA build),
#   3. lmustream itself, editable, with its test extras; this compiles the C++ kernel,
#   4. the offline text-to-speech engines of `lmustream data synth` (scripts/install_tts.sh).
# Usage: scripts/setup.sh [--no-system]      (PYTHON=... selects the interpreter; default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC="torch==2.13.0"

# shellcheck source=scripts/lib.sh
source scripts/lib.sh  # (the working directory is the repository root, see above)

install_system_packages() {
    local wanted=(g++ make libportaudio2)  # libportaudio2: microphone input through sounddevice
    # A PulseAudio server with a virtual source (tests/detect: `lmustream listen` on a real audio
    # server); libasound2-plugins routes PortAudio's ALSA devices to it.
    wanted+=(pulseaudio pulseaudio-utils libasound2-plugins)
    # The C++ kernel's tests: an aarch64 cross compiler and qemu to run its NEON build, clang
    # with libFuzzer for the model-file parser's fuzzer (tests/kernel, scripts/cross_aarch64.sh).
    wanted+=(g++-aarch64-linux-gnu qemu-user clang libclang-rt-dev)
    if ! "$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
        wanted+=(python3-dev)
    fi
    apt_install_missing "${wanted[@]}"
}

if [ "${1:-}" != "--no-system" ]; then
    install_system_packages
fi

log "installing $TORCH_SPEC (CPU)"
"$PYTHON" -m pip install -q --progress-bar off "$TORCH_SPEC"
log "installing lmustream (editable) and building its C++ kernel"
"$PYTHON" -m pip install -q --progress-bar off -e ".[dev]"
if [ "${1:-}" != "--no-system" ]; then
    log "installing the text-to-speech engines"
    PYTHON="$PYTHON" bash scripts/install_tts.sh
fi
"$PYTHON" -m lmustream info
