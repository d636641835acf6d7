"""Run an exported lmustream step graph with onnxruntime and numpy only (no torch, no lmustream).

    lmustream export --model kws.safetensors --onnx kws_audio.onnx --audio-in
    python examples/onnx_stream.py kws_audio.onnx clip.wav        # 16 kHz 16-bit mono WAV

    lmustream export --model kws.safetensors --onnx kws.onnx
    python examples/onnx_stream.py kws.onnx features.npy          # [frames, n_mels] normalized log-mel

It prints the running-mean decision each time it changes, and the final one.
"""

from __future__ import annotations

import argparse
import json
import wave

import numpy as np
import onnxruntime as ort


class OnnxStream:
    """One or more streams through the step graph; the state lives here, between calls."""

    def __init__(self, path: str, batch: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.meta = json.loads(self.session.get_modelmeta().custom_metadata_map["lmustream"])
        self.labels = self.meta["labels"]
        self.chunk = self.meta["chunk"]
        self.batch = batch
        self.reset()

    def reset(self) -> None:
        self.state = {f"state.{s['name']}": np.zeros([self.batch, *s["shape"]], dtype=s["dtype"])
                      for s in self.meta["state"]}

    def _run(self, feeds: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        values = dict(zip(names, self.session.run(names, {**feeds, **self.state})))
        self.state = {f"state.{n[5:]}": v for n, v in values.items() if n.startswith("next.")}
        self.last_outputs = values  # every output of the last call, by name (e.g. "spikes" if exported)
        return values["running"], values["per_frame"], values["valid"]

    def push_features(self, features: np.ndarray, padding: np.ndarray | None = None):
        """``features [batch, chunk, n_mels]`` -> (running, per_frame, valid), each per frame."""
        if padding is None:
            padding = np.zeros(features.shape[:2], dtype=bool)
        return self._run({"features": features.astype(np.float32), "padding": padding})

    def push_samples(self, samples: np.ndarray):
        """``samples [batch, 160 * chunk]`` float32 in [-1, 1] -> (running, per_frame, valid)."""
        return self._run({"samples": samples.astype(np.float32)})


def read_wav_16k(path: str) -> np.ndarray:
    try:
        w = wave.open(path, "rb")
    except (wave.Error, EOFError) as e:  # the standard library reads PCM WAV only (no FLAC, no float WAV)
        raise SystemExit(f"{path}: not a PCM WAV file ({e}); convert it first, e.g. "
                         f"python -c \"import soundfile as sf; x, r = sf.read('{path}'); "
                         f"sf.write('clip.wav', x, r, subtype='PCM_16')\" (then resample to 16 kHz if needed)")
    except OSError as e:
        raise SystemExit(f"{path}: cannot read ({e})")
    with w:
        if w.getframerate() != 16000 or w.getsampwidth() != 2:
            raise SystemExit(f"{path}: need 16 kHz 16-bit PCM (got {w.getframerate()} Hz, "
                             f"{8 * w.getsampwidth()}-bit); convert it first")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
    return data.mean(axis=1).astype(np.float32) / 32768.0


def probabilities(logits: np.ndarray, posterior: str) -> np.ndarray:
    """Class probabilities of one output row, as the model was trained to give them (metadata "posterior")."""
    logits = logits.astype(np.float64)
    if posterior == "sigmoid":  # binary cross-entropy: one independent probability per class
        return 0.5 * (1.0 + np.tanh(0.5 * logits))
    e = np.exp(logits - logits.max())
    return e / e.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", help="step graph written by `lmustream export`")
    parser.add_argument("input", help="a WAV file (audio-in graph) or a .npy of features (features-in graph)")
    args = parser.parse_args()
    stream = OnnxStream(args.onnx)
    per_call = stream.chunk
    if stream.meta["audio_in"]:
        audio = read_wav_16k(args.input)
        hop = stream.meta["samples_per_step"] * per_call
        lookahead = (stream.meta["lookahead_frames"] + 3) * stream.meta["samples_per_step"]
        audio = np.concatenate([audio, np.zeros(lookahead + (-(audio.size + lookahead)) % hop, np.float32)])
        calls = [lambda i=i: stream.push_samples(audio[None, i:i + hop]) for i in range(0, audio.size, hop)]
    else:
        feats = np.load(args.input).astype(np.float32)
        extra = stream.meta["lookahead_frames"]
        pad = np.concatenate([np.zeros(len(feats), bool), np.ones(extra + (-(len(feats) + extra)) % per_call, bool)])
        feats = np.concatenate([feats, np.zeros((len(pad) - len(feats), feats.shape[1]), np.float32)])
        calls = [lambda i=i: stream.push_features(feats[None, i:i + per_call], pad[None, i:i + per_call])
                 for i in range(0, len(feats), per_call)]
    frame, last = 0, None
    for call in calls:
        running, _, valid = call()
        for k in np.flatnonzero(valid[0]):
            best = int(running[0, k].argmax())
            if best != last:
                p = probabilities(running[0, k], stream.meta.get("posterior", "softmax"))[best]
                print(f"frame {frame:5d}  {stream.labels[best]:<12} logit {running[0, k, best]:+.3f}  p {p:.3f}")
                last = best
            frame += 1
    if last is not None:
        print(f"final: {stream.labels[last]} after {frame} frames")


if __name__ == "__main__":
    main()
