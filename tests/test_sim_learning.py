"""bench.sim_learning on two short demonstrations: each budget measured from one resumed run,
the no-image control blind (one frame for every episode) and only as far as asked, and the
recording kept for a rerun."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from bench.sim_learning import (
    FRAMES,
    SimLearningConfig,
    demonstrations,
    first_frame_l1,
    measure,
    table,
)
from trainer.inference.predict import Comparison, PredictReport
from trainer.run.metrics import read_metrics


def test_the_bench_measures_every_budget_and_keeps_the_recording(tmp_path):
    cfg = SimLearningConfig(tmp_path, episodes=2, val_episodes=1, budgets=(1, 3),
                            eval_episodes=1, control_steps=1, demo_steps=12,
                            eval_max_steps=3)  # fmt: skip
    rows = measure(cfg)

    assert [r.steps for r in rows] == [1, 3]
    assert 0 < rows[0].cpu_s < rows[1].cpu_s  # the time to reach 3 includes the first step
    # The second budget went on from the first: one run, every step logged once.
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]
    assert rows[0].control is not None and rows[1].control is None
    assert all(r.episodes == 1 and r.successes == 0 and r.eval_ep_s > 0 for r in rows)
    assert all(np.isfinite([r.held, r.held_units, r.train, r.first, r.first_median]).all()
               for r in rows)  # fmt: skip
    assert rows[0].first_control is not None and rows[1].first_control is None
    assert rows[0].first_median == rows[1].first_median  # the demonstrations', not the run's
    lines = table(rows).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| 1 |") and "| - |" in lines[3]
    assert " / - / " in lines[3]

    firsts = []
    for name in ("episode_0.hdf5", "episode_1.hdf5"):
        with h5py.File(tmp_path / "episodes" / name) as f, \
                h5py.File(tmp_path / "episodes-blank" / name) as blank:  # fmt: skip
            frames, blanked = f[FRAMES[0]][()], blank[FRAMES[0]][()]
            assert not (frames == frames[0]).all()  # the arm moves in the recording
            firsts.append(frames[0])
            # One frame for every episode, the first episode's first: nothing tells them apart.
            assert (blanked == firsts[0]).all()
            assert np.array_equal(f["action"][()], blank["action"][()])
    assert not np.array_equal(*firsts)  # each episode's own first frame shows its cube's place

    recorded = (tmp_path / "episodes" / "episode_0.hdf5").stat().st_mtime_ns
    assert demonstrations(cfg) == tmp_path / "episodes"
    assert (tmp_path / "episodes" / "episode_0.hdf5").stat().st_mtime_ns == recorded


def _report(rows: list[tuple[str, float, float, int]]) -> PredictReport:
    """Rows of (key, predicted, true, valid rows), every value of a 2 x 1 chunk alike."""
    comparisons = [
        Comparison(key, "", np.full((2, 1), p), np.full((2, 1), t), valid, 0.0, 0.0)
        for key, p, t, valid in rows
    ]
    return PredictReport(Path("ckpt"), "set", comparisons, 0.0, 0.0)


def test_the_first_frame_figures_compare_first_samples_with_the_median_first_chunk():
    train = _report(
        [
            ("episode_0_000000", 0, 0.0, 2),
            ("episode_0_000001", 0, 50.0, 2),
            ("episode_1_000000", 0, 2.0, 2),
            ("episode_2_000000", 0, 10.0, 2),
        ]
    )
    # The median first chunk is 2; later samples (here 50 and 99) take no part.
    held = _report(
        [
            ("episode_7_000000", 3.0, 3.0, 2),
            ("episode_8_000000", 9.0, 6.0, 1),
            ("episode_8_000001", 99.0, 0.0, 2),
        ]
    )
    policy, blind = first_frame_l1(held, train)
    assert policy == (0 + 3) / 2
    assert blind == (1 + 4) / 2
