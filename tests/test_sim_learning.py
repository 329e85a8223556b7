"""bench.sim_learning on two short demonstrations: each budget measured from one resumed run,
the no-image control blank and only as far as asked, and the recording kept for a rerun."""

from __future__ import annotations

import h5py
import numpy as np

from bench.sim_learning import FRAMES, SimLearningConfig, demonstrations, measure, table
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
    assert all(np.isfinite([r.held, r.held_units, r.train]).all() for r in rows)
    lines = table(rows).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| 1 |") and "| - |" in lines[3]

    for name in ("episode_0.hdf5", "episode_1.hdf5"):
        with h5py.File(tmp_path / "episodes" / name) as f, \
                h5py.File(tmp_path / "episodes-blank" / name) as blank:  # fmt: skip
            frames, blanked = f[FRAMES[0]][()], blank[FRAMES[0]][()]
            assert not (frames == frames[0]).all()  # the arm moves in the recording
            assert (blanked == frames[0]).all()
            assert np.array_equal(f["action"][()], blank["action"][()])

    recorded = (tmp_path / "episodes" / "episode_0.hdf5").stat().st_mtime_ns
    assert demonstrations(cfg) == tmp_path / "episodes"
    assert (tmp_path / "episodes" / "episode_0.hdf5").stat().st_mtime_ns == recorded
