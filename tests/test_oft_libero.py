"""LIBERO's actions as OpenVLA-OFT trains on them: its no-op rule and its gripper convention."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from episode_fixtures import read_split, run_convert
from layout_fixtures import expected_image, psnr, write_libero, write_robomimic

from common.errors import ConfigError
from pipeline.cli import main
from pipeline.config import ConvertConfig
from pipeline.convert.merge import MergeConfig, merge
from pipeline.convert.oft_libero import noop_steps, oft_gripper
from shards.manifest import read_manifest
from shards.platforms import PlatformMismatch
from trainer.inference.export import ExportConfig, export
from trainer.run.loop import train
from trainer.run.train_config import TrainConfig


def _actions(rows):
    return np.array(rows, dtype=np.float32)


def test_noops_are_still_steps_whose_gripper_repeats_the_last_kept_one():
    still = [0.0] * 6
    move = [0.1, 0, 0, 0, 0, 0]
    actions = _actions(
        [
            still + [-1],  # 0: first step, still: dropped whatever the gripper
            move + [-1],  # 1: moves: kept
            still + [-1],  # 2: still, same gripper as 1: dropped
            still + [1],  # 3: still but the gripper closes: kept
            still + [1],  # 4: same as the last kept (3): dropped
            [5e-5] + [0] * 5 + [1],  # 5: norm 5e-5 < 1e-4, same gripper: dropped
            [2e-4] + [0] * 5 + [1],  # 6: norm above the threshold: kept
            still + [-1],  # 7: gripper opens: kept
        ]
    )
    assert noop_steps(actions).tolist() == [True, False, True, False, True, True, False, False]


def test_the_last_kept_step_not_the_previous_row_sets_the_gripper():
    still = [0.0] * 6
    # 1 is dropped; 2 is compared with 0 (gripper -1), not with 1, so it is kept.
    actions = _actions([[0.3] + [0] * 5 + [-1], still + [-1], still + [0.5]])
    assert noop_steps(actions).tolist() == [False, True, False]


def test_gripper_is_clipped_to_0_1_and_inverted_and_nothing_else_changes():
    actions = _actions([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, -1.0], [1, 2, 3, 4, 5, 6, 1.0],
                        [0, 0, 0, 0, 0, 0, 0.25]])  # fmt: skip
    out = oft_gripper(actions)
    assert out[:, -1].tolist() == [1.0, 0.0, 0.75]  # -1 open -> 1, +1 close -> 0
    np.testing.assert_array_equal(out[:, :6], actions[:, :6])
    assert actions[0, -1] == -1.0  # the input is not modified


def _libero_with_noops(root):
    """One LIBERO demo file (LIBERO's own layout) whose actions have known no-op steps."""
    path = root / "KITCHEN_SCENE1_open_the_drawer_demo.hdf5"
    src = write_libero(path, [10], seed=3, instruction="Open the drawer")["demo_0"]
    rng = np.random.default_rng(0)
    act = rng.uniform(-0.5, 0.5, (10, 7)).astype(np.float32)
    act[:, 6] = [-1, -1, -1, 1, 1, 1, 1, -1, -1, -1]  # LIBERO: -1 open, +1 close
    act[[0, 2, 5, 6, 9], :6] = 0  # still at 0, 2, 5, 6, 9; 3 (gripper closes) kept anyway
    act[3, :6] = 0
    with h5py.File(path, "r+") as f:
        f["data/demo_0/actions"][...] = act
    src["action"] = act
    return src, np.array([0, 2, 5, 6, 9])


def test_robot_libero_drops_exactly_ofts_noops_and_inverts_the_gripper(tmp_path):
    src, noops = _libero_with_noops(tmp_path / "in")
    summary = run_convert(tmp_path / "in", tmp_path / "out", robot="libero", chunk=None,
                          val_episodes=0)  # fmt: skip
    kept = np.setdiff1d(np.arange(10), noops)
    assert noop_steps(src["action"]).tolist() == [t in noops for t in range(10)]
    manifest = read_manifest(tmp_path / "out")
    assert manifest.chunk == 8 and manifest.options["robot"] == "libero"
    assert manifest.episodes[0].steps == len(kept) and manifest.dropped_steps() == len(noops)
    samples = sorted(read_split(tmp_path / "out", "train"), key=lambda s: s["meta"]["t"])
    assert [s["meta"]["t"] for s in samples] == list(range(len(kept)))
    expected = src["action"][kept].copy()
    expected[:, 6] = 1 - np.clip(expected[:, 6], 0, 1)  # OFT: 1 open, 0 closed
    for s in samples:
        t = s["meta"]["t"]
        rows = min(8, len(kept) - t)
        np.testing.assert_array_equal(s["actions"][:rows], expected[t : t + rows])
        assert s["meta"]["proprio"] == [float(v) for v in src["proprio"][kept[t]]]
        # The frame is the kept step's own: of all the demo's frames, it is the closest.
        scores = [psnr(s["images"]["head"], expected_image(f)) for f in src["images"]["head"]]
        assert int(np.argmax(scores)) == kept[t]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats[manifest.dataset]["action"]["mask"] == [True] * 6 + [False]
    assert summary.manifest.dropped_steps() == 5


def test_without_robot_conversion_stays_faithful(tmp_path):
    src, _ = _libero_with_noops(tmp_path / "in")
    run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0, chunk=None)
    manifest = read_manifest(tmp_path / "out")
    assert manifest.chunk == 8 and "robot" not in manifest.options
    assert manifest.episodes[0].steps == 10 and manifest.dropped_steps() == 0
    assert "dropped_steps" not in (tmp_path / "out" / "manifest.json").read_text()
    samples = read_split(tmp_path / "out", "train")
    first = next(s for s in samples if s["meta"]["t"] == 0)
    np.testing.assert_array_equal(first["actions"], src["action"][:8])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"robot": "aloha", "chunk": 8}, "--chunk 8 conflicts with --robot aloha"),
        ({"robot": "libero", "action_dim": 14}, "--action-dim 14 conflicts with --robot libero"),
        ({"robot": "aloha", "no_normalize_dims": (6, 13)}, "--no-normalize-dims conflicts"),
    ],
)
def test_options_oft_would_decode_differently_from_the_robot_are_refused(tmp_path, options,
                                                                          message):  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        ConvertConfig(tmp_path, shards_dir=tmp_path / "out", **options)


def test_robot_sets_chunk_masks_and_width_and_info_names_the_platform(tmp_path):
    cfg = ConvertConfig(tmp_path, shards_dir=tmp_path / "out", robot="aloha")
    assert (cfg.chunk, cfg.action_dim, cfg.no_normalize_dims) == (25, 14, ())
    assert ConvertConfig(tmp_path, shards_dir=tmp_path / "o").chunk == 8  # the default stays
    _libero_with_noops(tmp_path / "in")
    run_convert(tmp_path / "in", tmp_path / "out", robot="libero", chunk=None, val_episodes=0)
    result = CliRunner().invoke(main, ["info", str(tmp_path / "out")])
    assert "OpenVLA-OFT libero (made with --robot libero; 5 no-op steps dropped)" in result.output
    run_convert(tmp_path / "in", tmp_path / "plain", chunk=None, val_episodes=0)
    result = CliRunner().invoke(main, ["info", str(tmp_path / "plain")])
    assert "OpenVLA-OFT fits libero by its dims" in result.output
    # Bridge's chunk, but LIBERO's 8-dim state: OFT's bridge takes 7.
    run_convert(tmp_path / "in", tmp_path / "five", chunk=5, val_episodes=0)
    result = CliRunner().invoke(main, ["info", str(tmp_path / "five")])
    assert "OpenVLA-OFT no platform fits" in result.output


def test_a_run_on_a_robot_set_records_the_platform_and_exports_for_it(tmp_path):
    """convert --robot libero -> vla-train (LIBERO's normalization by default, the platform
    in train_config.json) -> export --to oft for OFT's libero; --normalization bounds is not
    what OFT's libero decodes with, so that run's export is refused."""
    write_libero(
        tmp_path / "in" / "TASK_open_it_demo.hdf5", [24, 24], seed=5, instruction="open it"
    )
    run_convert(
        tmp_path / "in",
        tmp_path / "set",
        robot="libero",
        chunk=None,
        val_episodes=0,
        image_size=224,
    )
    common = dict(shards=str(tmp_path / "set"), base="tiny", lora_rank=4, device="cpu",
                  workers=0, batch_size=2, max_steps=1, save_every=1)  # fmt: skip
    cfg = TrainConfig(run_dir=tmp_path / "run", **common)
    train(cfg)
    saved = json.loads((cfg.run_dir / "step-1" / "train_config.json").read_text())
    assert (saved["robot"], saved["normalization"], saved["proprio"]) == (
        "libero", "bounds_q99", True)  # fmt: skip
    out = export(ExportConfig(cfg.run_dir / "step-1", tmp_path / "oft"))
    assert json.loads((out / "oft_platform.json").read_text())["platform"] == "libero"
    assert (out / "proprio_projector--1_checkpoint.pt").is_file()
    other = TrainConfig(run_dir=tmp_path / "other", normalization="bounds", **common)
    train(other)
    with pytest.raises(PlatformMismatch, match="normalization bounds .libero: bounds_q99."):
        export(ExportConfig(other.run_dir / "step-1", tmp_path / "oft2"))


def test_parts_made_with_robot_libero_merge_to_the_one_machine_set(tmp_path):
    for i in range(3):
        _libero_with_noops(tmp_path / "in" / f"d{i}")
    options = dict(robot="libero", chunk=None, val_episodes=1)
    run_convert(tmp_path / "in", tmp_path / "single", **options)
    parts = [tmp_path / f"part{i}" for i in (1, 2)]
    for i, part in enumerate(parts, start=1):
        run_convert(tmp_path / "in", part, part=(i, 2), **options)
    merge(MergeConfig(tuple(parts), tmp_path / "merged", progress=False))
    for name in ("manifest.json", "stats.json"):
        merged = json.loads((tmp_path / "merged" / name).read_text())
        single = json.loads((tmp_path / "single" / name).read_text())
        merged.pop("tool_version", None), single.pop("tool_version", None)
        assert merged == single, name
    assert read_manifest(tmp_path / "merged").dropped_steps() == 15


def test_the_conventions_do_not_depend_on_the_input_layout(tmp_path):
    """The same no-op rule and gripper on a robomimic file (as on an RLDS set): one wrapper
    around whichever reader the layout has."""
    path = tmp_path / "in" / "lift.hdf5"
    write_robomimic(path, [10], seed=2)
    libero_src, noops = _libero_with_noops(tmp_path / "other")
    with h5py.File(path, "r+") as f:
        f["data/demo_0/actions"][...] = libero_src["action"]
    run_convert(tmp_path / "in", tmp_path / "out", robot="libero", chunk=None, val_episodes=0,
                instruction="lift the cube")  # fmt: skip
    manifest = read_manifest(tmp_path / "out")
    assert manifest.layout == "robomimic" and manifest.dropped_steps() == len(noops)
    first = next(s for s in read_split(tmp_path / "out", "train") if s["meta"]["t"] == 0)
    kept = np.setdiff1d(np.arange(10), noops)
    expected = 1 - np.clip(libero_src["action"][kept, 6], 0, 1)
    np.testing.assert_array_equal(first["actions"][: len(kept), 6], expected)
