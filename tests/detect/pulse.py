"""A private PulseAudio server whose default source plays what is written to a null sink.

The server runs in a temporary folder with its own socket (nothing of the machine's audio
setup is touched or needed): ``module-null-sink`` named ``SINK`` is the default sink and
its monitor the default source, so ``paplay --device=SINK file`` is heard by every recording
client, e.g. PortAudio through ALSA's pulse plugin (libasound2-plugins).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SINK = "lmustream_virtual_mic"
CONFIG = """\
load-module module-native-protocol-unix socket={socket} auth-anonymous=1
load-module module-null-sink sink_name={sink} rate=16000 channels=1
set-default-sink {sink}
set-default-source {sink}.monitor
"""


class PulseUnavailable(RuntimeError):
    """PulseAudio is not installed here or cannot be started."""


class PulseServer:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.socket = self.folder / "native"
        self.process: subprocess.Popen | None = None
        self.log = self.folder / "pulseaudio.log"

    @property
    def env(self) -> dict:
        """The environment a client needs to reach this server (and only it)."""
        return {**os.environ, "PULSE_SERVER": f"unix:{self.socket}", "XDG_RUNTIME_DIR": str(self.folder),
                "HOME": str(self.folder), "PULSE_SINK": SINK, "PULSE_SOURCE": f"{SINK}.monitor"}

    def start(self, timeout: float = 15.0) -> "PulseServer":
        exe = shutil.which("pulseaudio")
        if exe is None or shutil.which("pactl") is None or shutil.which("paplay") is None:
            raise PulseUnavailable("pulseaudio / pulseaudio-utils are not installed (scripts/setup.sh installs them)")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "server.pa"
        config.write_text(CONFIG.format(socket=self.socket, sink=SINK))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [exe, "-n", "-F", str(config), "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
                 "--disable-shm=yes", "--log-target=stderr"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            probe = subprocess.run(["pactl", "info"], env=self.env, capture_output=True, text=True)
            if probe.returncode == 0 and SINK in probe.stdout:
                return self
            time.sleep(0.2)
        self.stop()
        raise PulseUnavailable(f"PulseAudio did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def play(self, path: Path) -> subprocess.CompletedProcess:
        """Play a file into the null sink (returns when it has been played)."""
        return subprocess.run(["paplay", f"--device={SINK}", str(path)], env=self.env, capture_output=True,
                              text=True, timeout=120)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
