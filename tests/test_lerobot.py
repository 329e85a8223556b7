"""LeRobot v3.0 folders convert: hand-made ones, and tests/assets/lerobot_v3, which LeRobot's
own writer made (tests/assets/make_lerobot_v3.py says how)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from episode_fixtures import read_split, run_convert
from layout_fixtures import SIZE, check_samples, write_lerobot_v3

from pipeline.cli import main
from pipeline.inputs.layout import LayoutError
from pipeline.inputs.registry import detect_layout
from shards.manifest import read_manifest

CHUNK = 4
OPTIONS = {"image_size": SIZE, "chunk": CHUNK, "val_episodes": 0}
# AV1 at LeRobot's crf 30 on 32-pixel frames: well below JPEG 95, far above a wrong frame.
VIDEO_PSNR = 28
ASSETS = Path(__file__).parent / "assets"
WRITTEN, TRUTH = ASSETS / "lerobot_v3", ASSETS / "lerobot_v3_truth"
# The written dataset's cameras, ALOHA's names, and what our sets call them.
SET_NAMES = {"cam_high": "head", "cam_left_wrist": "left_wrist"}


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


def _truth(strip_png: str) -> dict[str, dict]:
    """What make_lerobot_v3.py recorded, by episode, with the frames of one of its PNG strips
    (`given.png`: what LeRobot's writer was given; `decoded.png`: what its reader decodes)."""
    from PIL import Image

    facts = json.loads((TRUTH / "truth.json").read_text())
    vectors = np.load(TRUTH / "vectors.npz")
    cameras, (height, width) = facts["cameras"], facts["frame_shape"]
    with Image.open(TRUTH / strip_png) as im:
        strip = np.asarray(im.convert("RGB"))
    # Rows are frames, columns cameras: (frames, H, cameras, W, 3) -> (cameras, frames, H, W, 3).
    by_camera = strip.reshape(-1, height, len(cameras), width, 3).transpose(2, 0, 1, 3, 4)
    sources, start = {}, 0
    for e, episode in enumerate(facts["episodes"]):
        stop = start + episode["length"]
        sources[f"episode_{e:06d}"] = {
            "action": vectors[f"action_{e}"], "proprio": vectors[f"state_{e}"],
            "instructions": [episode["task"]],
            "images": {SET_NAMES[c]: by_camera[i, start:stop] for i, c in enumerate(cameras)},
        }  # fmt: skip
        start = stop
    return sources


def test_dataset_written_by_lerobot_itself(tmp_path):
    shutil.copytree(WRITTEN, tmp_path / "in")
    result = CliRunner().invoke(main, [
        "convert", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet", "--workers", "1",
        "--image-size", str(SIZE), "--chunk", str(CHUNK), "--val-episodes", "0",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    m = read_manifest(tmp_path / "out")
    assert (m.layout, m.cameras, m.action_dim, m.proprio_dim) == (
        "lerobot",
        ["head", "left_wrist"],
        14,
        14,
    )
    given, decoded = _truth("given.png"), _truth("decoded.png")
    assert [e.path for e in m.episodes] == list(given)
    samples = read_split(tmp_path / "out", "train")
    assert len(samples) == sum(len(src["action"]) for src in given.values())
    # Actions and state exactly; frames against LeRobot's own decoding, from which ours differ
    # only by our resize and JPEG: the bound of lossless sources (41.4 dB measured) ...
    check_samples(samples, decoded, CHUNK)
    # ... and against what its writer was given, through AV1 as well (41.8 dB measured). A
    # neighbouring, turned or swapped frame stays under 25 dB (21.9 at most here).
    check_samples(samples, given, CHUNK, min_psnr=VIDEO_PSNR)


def test_frames_decode_as_lerobots_own_reader_decodes_them():
    from pipeline.inputs.lerobot import LerobotLayout

    decoded = _truth("decoded.png")
    layout = LerobotLayout()
    refs = layout.list_episodes(WRITTEN)
    assert [r.relative for r in refs] == list(decoded)
    for ref in refs:
        with layout.open_episode(ref) as episode:
            for camera, truth in decoded[ref.relative]["images"].items():
                ours = episode.frames(camera, 0, len(truth)).astype(np.int16)
                # AV1 decodes bit-exactly by its specification (equal here, PyAV 18 against
                # LeRobot's 15); another FFmpeg's YUV-to-RGB rounding may move a level or two.
                # The next frame's blue differs by 37 levels.
                assert np.abs(ours - truth).max() <= 2, (ref.relative, camera)


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
