"""Which post-processing works on real speech: logit window, posterior smoothing and hold, measured.

    python benchmarks/detect_smoothing.py --model sc12-lmuformer \
        --positives ../shared/data/speech_commands_v0.01_sample \
        --negatives ../shared/data/spoken_sentences --noise ../shared/data/speech_commands_noise --hours 2

Builds the eval-stream test stream once, runs the model over it once, then scores every
combination of --posteriors x --windows x --smoothings x --holds x --isolations x --trailing-pauses with the detector's
own code, printing
per-keyword-threshold FRR at 0.5 / 1 / 5 false alarms per hour, the same with one threshold
shared by all keywords (false alarms of all keywords summed), and the median latency at
1 FA/h. ``--windows 0.01`` is the softmax of each frame's own logits (no clip-like averaging).
"""

from __future__ import annotations

import argparse
import itertools
import time

from tqdm import tqdm

from lmustream.data.clips import collect_audio
from lmustream.stream.backend import open_kernel
from lmustream.stream.detector import DetectorConfig, is_keyword_label
from lmustream.stream.stream_eval import build_plan, frame_logits, keyword_clips, stream_levels, summarize, sweep


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sc12-lmuformer")
    parser.add_argument("--positives", default="../shared/data/speech_commands_v0.01_sample")
    parser.add_argument("--negatives", nargs="+", default=["../shared/data/spoken_sentences"])
    parser.add_argument("--noise", nargs="*", default=["../shared/data/speech_commands_noise"])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--windows", type=floats, default=[0.01, 0.5, 0.75, 1.0, 1.28])
    parser.add_argument("--smoothings", type=floats, default=[0.01, 0.1, 0.2, 0.3])
    parser.add_argument("--holds", type=floats, default=[0.0, 0.1])
    parser.add_argument("--posteriors", default="sigmoid,softmax")
    parser.add_argument("--isolations", type=floats, default=[0.0])
    parser.add_argument("--trailing-pauses", type=floats, default=[0.0],
                        help="seconds of quiet a keyword's word must be followed by (with an isolation > 0)")
    parser.add_argument("--refractory", type=float, default=1.0)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()

    kernel = open_kernel(args.model, args.backend)
    labels = list(kernel.labels)
    keywords = [label for label in labels if is_keyword_label(label)]
    positives, _ = keyword_clips(args.positives, keywords)
    plan = build_plan(positives, collect_audio(args.negatives), collect_audio(args.noise), args.hours,
                      seed=args.seed, repeats=args.repeats)
    started = time.perf_counter()
    with tqdm(total=plan.n_samples // 160, unit="frame", unit_scale=True, desc="model") as bar:
        logits = frame_logits(kernel, plan, progress=bar)
    model_s = time.perf_counter() - started
    c = plan.composition
    print(f"model {args.model} ({kernel.backend_note}); {plan.hours:.2f} h stream, {c['keyword_insertions']} keyword "
          f"insertions from {c['keyword_clips']} clips ({c['keyword_speakers']} speakers), {c['speech_items']} "
          f"sentences ({c['speech_files']} files, {c['speech_passes']} passes), noise SNR {c['snr_db']} dB; "
          f"model pass {model_s:.0f} s")
    head = (f"{'posterior':>9} {'window s':>8} {'smooth s':>8} {'hold s':>6} {'isol s':>6} {'pause s':>7} | "
            f"{'per-keyword thresholds: FRR at 0.5 / 1 / 5 FA/h':>44}"
            f" {'lat@1':>7} | {'one threshold: FRR at 0.5 / 1 / 5 FA/h':>38} {'lat@1':>7}")
    print(head)
    print("-" * len(head))
    levels = stream_levels(plan)
    for posterior, window, smoothing, hold, isolation, pause in itertools.product(
            args.posteriors.split(","), args.windows, args.smoothings, args.holds, args.isolations,
            args.trailing_pauses):
        config = DetectorConfig(window=window, smoothing=smoothing, hold=hold, refractory=args.refractory,
                                posterior=posterior, isolation=isolation, trailing_pause=pause)
        curves = sweep(logits, labels, plan, config, int(kernel.lookahead), keywords=keywords, levels=levels)
        table = summarize(curves, plan.hours)
        cells = []
        for name in ("all (per-keyword thresholds)", "all (one threshold, FA/h of all keywords)"):
            row = table[name]
            frr = " / ".join("  n/a" if row[r]["frr"] is None else f"{100 * row[r]['frr']:5.1f}"
                             for r in ("0.5", "1", "5"))
            lat = row["1"]["median_latency_ms"]
            cells.append(f"{frr:>{44 if not cells else 38}} {'-' if lat is None else format(lat, '.0f') + 'ms':>7}")
        print(f"{posterior:>9} {window:>8g} {smoothing:>8g} {hold:>6g} {isolation:>6g} {pause:>7g} | {cells[0]} | "
              f"{cells[1]}")


if __name__ == "__main__":
    main()
