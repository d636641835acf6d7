"""Exit policies and the frame accounting, on statistics whose answers are known by hand.

Frame accounting (N input frames, look-ahead D): a decision on running-mean output t has
consumed t + 1 + D frames; once all N frames are in, the decision is the last output's.
"""

import pytest
import torch

from lmustream.errors import ConfigError
from lmustream.stream.early_exit import (MarginThreshold, NeverExit, OperatingPoint, PosteriorThreshold,
                                         PrefixOutputs, PrefixStats, StableArgmax, StableThreshold, best_point,
                                         decide, default_grid, make_policy, pareto_front, run_lengths)
from lmustream.stream.early_exit_report import early_exit_report


def test_run_lengths_count_consecutive_equal_labels():
    labels = torch.tensor([[3, 3, 1, 1, 1, 2, 3, 3], [0, 0, 0, 0, 0, 0, 0, 0]])
    assert run_lengths(labels).tolist() == [[1, 2, 1, 2, 3, 1, 1, 2], [1, 2, 3, 4, 5, 6, 7, 8]]


def test_stats_from_logits():
    logits = torch.log(torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.2, 0.3, 0.5]]]))
    s = PrefixStats.from_logits(logits)
    assert torch.allclose(s.top1, torch.tensor([[0.7, 0.5, 0.5]], dtype=torch.float64))
    assert torch.allclose(s.margin, torch.tensor([[0.5, 0.1, 0.2]], dtype=torch.float64))
    assert s.label.tolist() == [[0, 1, 2]] and s.run.tolist() == [[1, 1, 1]]
    with pytest.raises(ValueError, match="classes >= 2"):
        PrefixStats.from_logits(torch.zeros(2, 5))


def stats_of(top1, labels, margin=None):
    top1 = torch.tensor(top1, dtype=torch.float64)
    labels = torch.tensor(labels)
    margin = top1 * 0.5 if margin is None else torch.tensor(margin, dtype=torch.float64)
    return PrefixStats(top1, margin, labels, run_lengths(labels))


def test_decisions_count_the_lookahead_and_end_with_the_full_output():
    N, D = 10, 2  # early exits possible on outputs 0..6 (output 6 has consumed 9 < 10 frames)
    s = stats_of([[0.1, 0.2, 0.95, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],   # fires at output 2
                  [0.1] * 7 + [0.99, 0.99, 0.1],                         # fires only at 7, 8: too late
                  [0.1] * 6 + [0.99, 0.1, 0.1, 0.1],                     # fires at 6: the last early chance
                  [0.1] * 10],                                           # never
                 [[4, 4, 1, 1, 1, 1, 1, 1, 1, 1],
                  [2, 2, 2, 2, 2, 2, 2, 0, 0, 3],
                  [5, 5, 5, 5, 5, 5, 6, 6, 6, 7],
                  [1, 1, 1, 1, 1, 1, 1, 1, 1, 8]])
    d = decide(PosteriorThreshold(0.9), s, N, D)
    assert d.output.tolist() == [2, 9, 6, 9]
    assert d.consumed.tolist() == [5, 10, 9, 10]
    assert d.label.tolist() == [1, 3, 6, 8]  # the full decision is the last output's label
    never = decide(NeverExit(), s, N, D)
    assert never.output.tolist() == [9] * 4 and never.consumed.tolist() == [10] * 4


def test_stable_margin_and_combined_policies():
    s = stats_of([[0.5, 0.6, 0.6, 0.95, 0.96, 0.97, 0.97, 0.97]],
                 [[1, 2, 2, 2, 3, 3, 3, 3]],
                 margin=[[0.1, 0.2, 0.3, 0.85, 0.9, 0.9, 0.9, 0.9]])
    N, D = 8, 0
    assert decide(StableArgmax(2), s, N, D).output.tolist() == [2]
    assert decide(StableArgmax(3), s, N, D).output.tolist() == [3]
    assert decide(StableArgmax(4), s, N, D).output.tolist() == [7]   # run of 4 only at output 7 = the end
    assert decide(MarginThreshold(0.8), s, N, D).output.tolist() == [3]
    # posterior >= 0.96 from output 4 on, where label 3 starts: it must hold for 2 outputs -> output 5
    assert decide(PosteriorThreshold(0.96), s, N, D).output.tolist() == [4]
    d = decide(StableThreshold(2, 0.96), s, N, D)
    assert d.output.tolist() == [5] and d.consumed.tolist() == [6] and d.label.tolist() == [3]


def test_policy_parameters_are_checked():
    with pytest.raises(ConfigError, match="threshold"):
        PosteriorThreshold(1.5)
    with pytest.raises(ConfigError, match="frames"):
        StableArgmax(0)
    with pytest.raises(ConfigError, match="unknown exit policy"):
        make_policy("sometimes")
    with pytest.raises(ConfigError, match="combined"):
        make_policy("combined", frames=3)
    assert make_policy("combined", frames=3, threshold=0.9) == StableThreshold(3, 0.9)
    assert StableThreshold(3, 0.9).describe() == "combined(frames=3, threshold=0.9)"


def outputs_of(stats, targets, N, D, audio=None):
    targets = torch.tensor(targets)
    audio = torch.full_like(targets, N) if audio is None else torch.tensor(audio)
    return PrefixOutputs(stats, targets, N, D, audio)


def test_scores_and_accuracy_vs_frames():
    N, D = 6, 1
    s = stats_of([[0.99, 0.99, 0.99, 0.99, 0.99, 0.99], [0.2, 0.3, 0.95, 0.95, 0.95, 0.95]],
                 [[0, 0, 0, 0, 0, 1], [1, 1, 0, 0, 0, 0]])
    out = outputs_of(s, [1, 0], N, D, audio=[4, 6])
    assert out.full_accuracy == 1.0
    p = out.score(PosteriorThreshold(0.9))  # clip 0 exits on output 0 (wrong), clip 1 on output 2 (right)
    assert p.accuracy == 0.5 and p.accuracy_drop == 0.5
    assert p.mean_frames == (2 + 4) / 2 and p.frames_saved == pytest.approx(1 - 3 / 6)
    assert p.audio_frames_saved == pytest.approx(1 - (2 + 4) / (4 + 6))
    rows = out.accuracy_vs_frames()
    assert [r["frames_seen"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["accuracy"] is None and rows[0]["output_frame"] is None  # still inside the look-ahead
    assert [r["output_frame"] for r in rows[1:]] == [0, 1, 2, 3, 5]  # at N: the flushed last output
    assert [r["accuracy"] for r in rows[1:]] == [0.0, 0.0, 0.5, 0.5, 1.0]


def point(frames, accuracy, full=0.9):
    return OperatingPoint("stable", {"frames": int(frames)}, accuracy, frames, 1 - frames / 100, 0.0, full - accuracy)


def test_best_point_and_pareto_front():
    points = [point(30, 0.80), point(40, 0.896), point(50, 0.895), point(60, 0.9), point(45, 0.85)]
    assert best_point(points, 0.005).mean_frames == 40  # 0.4% drop; 30 frames drops 10%
    assert best_point(points, 0.0).mean_frames == 60
    assert best_point(points[:1], 0.005) is None
    assert [p.mean_frames for p in pareto_front(points)] == [30, 40, 60]


def test_report_picks_the_setting_that_saves_most_within_the_drop():
    # 40 clips, N = 20, D = 0: clips A are right and confident from output 4 on; clips B are
    # confidently wrong on outputs 0..11, then right. Anything that exits B before output 12 is
    # wrong on B; stable for 13 outputs exits A on output 16 and never exits B (the full output).
    N = 20
    a = [3] * 4 + [7] * 16
    b = [2] * 12 + [7] * 8
    labels = [a] * 20 + [b] * 20
    top1 = [[0.4] * 4 + [0.99] * 16] * 20 + [[0.95] * 12 + [0.99] * 8] * 20
    out = outputs_of(stats_of(top1, labels), [7] * 40, N, 0)
    grid = {"stable": [StableArgmax(k) for k in range(1, N + 1)], "threshold": [PosteriorThreshold(0.9)]}
    r = early_exit_report(out, max_drop=0.005, grid=grid)
    assert r["full_accuracy"] == 1.0
    assert r["policy"] == "stable(frames=13)"  # B's wrong run lasts 12 outputs: 13 are needed
    assert r["exit_accuracy"] == 1.0 and r["accuracy_drop"] == 0.0
    assert r["mean_frames"] == pytest.approx((20 * 17 + 20 * 20) / 40)  # A exits on output 16 (17 frames)
    assert r["policies"]["threshold"]["best"] is None  # exits B early and wrong: 50% drop
    # tuned on a split of A-like clips only, the threshold exits soonest there; measured here it
    # exits the B clips on their first, wrong output: the drop shows
    easy = outputs_of(stats_of(top1[:20], labels[:20]), [7] * 20, N, 0)
    tuned = early_exit_report(out, max_drop=0.005, tune=easy, grid=grid)
    assert tuned["policy"] == "threshold(threshold=0.9)" and tuned["accuracy_drop"] == pytest.approx(0.5)


def test_default_grid_covers_each_policy():
    grid = default_grid(98)
    assert set(grid) == {"threshold", "margin", "stable", "combined"}
    assert [p.frames for p in grid["stable"]] == list(range(1, 99))
    thresholds = [p.threshold for p in grid["threshold"]]
    assert thresholds == sorted(thresholds) and thresholds[0] <= 0.31 and thresholds[-1] >= 0.9999


@pytest.mark.parametrize("D", [0, 3])
def test_fast_sweep_equals_deciding_each_policy(D):
    # logits that drift towards a class, so that runs, margins and thresholds all vary
    g = torch.Generator().manual_seed(5)
    n, N, K = 60, 30, 5
    logits = torch.randn(n, N, K, generator=g).cumsum(dim=1) / 2
    out = outputs_of(PrefixStats.from_logits(logits), torch.randint(0, K, (n,), generator=g).tolist(), N, D)
    grid = default_grid(N)
    grid["never"] = [NeverExit()]
    swept = out.sweep(grid)
    for name, policies in grid.items():
        assert swept[name] == [out.score(p) for p in policies], name
    frames = {p.mean_frames for p in swept["combined"]}
    assert len(frames) > 20  # the grid exercised many distinct exits
