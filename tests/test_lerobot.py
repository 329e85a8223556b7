"""LeRobot v3.0 folders convert: one made by hand always, one by LeRobot's writer when installed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from episode_fixtures import read_split, run_convert
from layout_fixtures import SIZE, check_samples, write_lerobot_v3

from pipeline.inputs.layout import LayoutError
from pipeline.inputs.registry import detect_layout

pytest.importorskip("av", reason="the lerobot extra (PyAV) is not installed")
pytest.importorskip("pyarrow", reason="the lerobot extra (pyarrow) is not installed")
pytest.importorskip("pandas", reason="pandas writes the tasks table as LeRobot does")

CHUNK = 4
OPTIONS = {"image_size": SIZE, "chunk": CHUNK, "val_episodes": 0}
# AV1 at LeRobot's crf 30 on 32-pixel frames: well below JPEG 95, far above a wrong frame.
VIDEO_PSNR = 28


@pytest.mark.parametrize("wrist_as_image", [True, False])
def test_hand_made_v3_folder_converts(tmp_path, wrist_as_image):
    src = write_lerobot_v3(
        tmp_path / "in", [7, 5], ["pick the cube", "place the cube"], wrist_as_image=wrist_as_image
    )
    assert detect_layout(tmp_path / "in") == "lerobot"
    summary = run_convert(tmp_path / "in", tmp_path / "out", **OPTIONS)
    m = summary.manifest
    assert (m.layout, m.cameras, m.action_dim, m.proprio_dim) == (
        "lerobot",
        ["head", "wrist"],
        6,
        6,
    )
    assert [e.path for e in m.episodes] == ["episode_000000", "episode_000001"]
    samples = read_split(tmp_path / "out", "train")
    assert len(samples) == 12
    check_samples(samples, src, CHUNK, min_psnr=VIDEO_PSNR)


@pytest.mark.parametrize("index_name", ["task", None])
def test_task_table_as_each_lerobot_release_writes_it(tmp_path, index_name):
    import pandas as pd

    from pipeline.inputs.lerobot import _task_names

    # Earlier v3.0 writers left the index unnamed (pandas stores it as its own column).
    tasks = ["pick", "place", "stack"]
    frame = pd.DataFrame({"task_index": [2, 0, 1]}, index=pd.Index(tasks, name=index_name))
    frame.to_parquet(tmp_path / "tasks.parquet")
    assert _task_names(tmp_path / "tasks.parquet") == ["place", "stack", "pick"]


def test_a_v21_folder_says_how_to_upgrade(tmp_path):
    write_lerobot_v3(tmp_path / "in", [3], ["x"])
    info = json.loads((tmp_path / "in" / "meta" / "info.json").read_text())
    info["codebase_version"] = "v2.1"
    (tmp_path / "in" / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(LayoutError, match="v2.1 dataset.*convert_dataset_v21_to_v30"):
        run_convert(tmp_path / "in", tmp_path / "out", **OPTIONS)
    assert not (tmp_path / "out").exists()


def test_dataset_written_by_lerobot_itself(tmp_path):
    lerobot = pytest.importorskip(
        "lerobot.datasets.lerobot_dataset",
        reason="LeRobot is not installed (pip install lerobot), so its own writer cannot run",
    )
    from layout_fixtures import actions, frames

    ds = lerobot.LeRobotDataset.create(
        repo_id="local/tiny", fps=10, root=tmp_path / "in", robot_type="aloha",
        features={
            "action": {"dtype": "float32", "shape": (6,), "names": None},
            "observation.state": {"dtype": "float32", "shape": (6,), "names": None},
            "observation.images.cam_high": {"dtype": "video", "shape": (32, 32, 3),
                                            "names": ["height", "width", "channels"]},
        },
    )  # fmt: skip
    src = {}
    for e, (steps, task) in enumerate([(6, "pick the cube"), (4, "place the cube")]):
        act, state = actions(steps, 6, e).astype(np.float32), actions(steps, 6, e + 9)
        head = frames(steps, 32, 32, e)
        for t in range(steps):
            ds.add_frame({"action": act[t], "observation.state": state[t].astype(np.float32),
                          "observation.images.cam_high": head[t], "task": task})  # fmt: skip
        ds.save_episode()
        src[f"episode_{e:06d}"] = {"action": act, "proprio": state.astype(np.float32),
                                   "instructions": [task], "images": {"head": head}}  # fmt: skip
    ds.finalize()
    run_convert(tmp_path / "in", tmp_path / "out", **OPTIONS)
    check_samples(read_split(tmp_path / "out", "train"), src, CHUNK, min_psnr=VIDEO_PSNR)


def test_missing_or_short_video_skips_the_episode_saying_why(tmp_path):
    import pyarrow.parquet as pq

    write_lerobot_v3(tmp_path / "in", [4, 4, 4], ["a", "b", "c"])
    episodes = tmp_path / "in" / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(episodes)
    column = "videos/observation.images.cam_high/to_timestamp"
    ends = table.column(column).to_pylist()
    ends[1] -= 0.2  # episode 1's span now stops two frames early
    table = table.set_column(table.schema.get_field_index(column), column, [ends])
    pq.write_table(table, episodes)
    summary = run_convert(tmp_path / "in", tmp_path / "out", **OPTIONS)
    assert summary.skipped == [
        ("episode_000001", "camera 'head': its video spans 0.20 s, short of 4 frames at 10 fps")
    ]
    (
        tmp_path / "in" / "videos" / "observation.images.cam_high" / "chunk-000" / "file-000.mp4"
    ).unlink()
    with pytest.raises(Exception, match="none of 3 episodes is usable.*video .* is missing"):
        run_convert(tmp_path / "in", tmp_path / "out2", **OPTIONS)
