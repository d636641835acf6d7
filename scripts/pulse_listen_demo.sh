#!/usr/bin/env bash
# `lmustream listen` without a microphone: a private PulseAudio server (its own socket in a
# temporary folder; the machine's audio setup is not touched) whose default source is the
# monitor of a null sink, a recording played into that sink, and the detector listening.
#   scripts/pulse_listen_demo.sh [FILE] [-- extra `lmustream listen` options]
# FILE defaults to examples/keywords.flac. Needs pulseaudio, pulseaudio-utils and
# libasound2-plugins (scripts/setup.sh installs them). tests/detect/test_pulseaudio.py runs
# the same setup under pytest and checks what is detected.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FILE=${1:-examples/keywords.flac}
shift || true
[ "${1:-}" = "--" ] && shift

for tool in pulseaudio pactl paplay; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (run scripts/setup.sh)" >&2; exit 2; }
done
[ -f "$FILE" ] || { echo "error: no such file: $FILE" >&2; exit 2; }

RUNDIR=$(mktemp -d)
SINK=lmustream_virtual_mic
export XDG_RUNTIME_DIR="$RUNDIR" HOME="$RUNDIR" PULSE_SERVER="unix:$RUNDIR/native"
cat > "$RUNDIR/server.pa" <<EOF
load-module module-native-protocol-unix socket=$RUNDIR/native auth-anonymous=1
load-module module-null-sink sink_name=$SINK rate=16000 channels=1
set-default-sink $SINK
set-default-source $SINK.monitor
EOF
pulseaudio -n -F "$RUNDIR/server.pa" --daemonize=no --exit-idle-time=-1 --use-pid-file=no \
    --disable-shm=yes --log-target=file:"$RUNDIR/pulseaudio.log" &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$RUNDIR"; }
trap cleanup EXIT
for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.2; done
pactl info >/dev/null || { echo "error: PulseAudio did not start:" >&2; cat "$RUNDIR/pulseaudio.log" >&2; exit 1; }

SECONDS_LONG=$("$PYTHON" -c "import soundfile, sys; print(soundfile.info(sys.argv[1]).duration + 3)" "$FILE")
"$PYTHON" -m lmustream listen --no-meter --seconds "$SECONDS_LONG" "$@" &
LISTENER=$!
sleep 3  # model loading
paplay --device="$SINK" "$FILE"
wait "$LISTENER"
