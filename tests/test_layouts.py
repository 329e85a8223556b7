"""Data nobody here wrote converts without hand work: ACT/ALOHA as recorded, LIBERO, robomimic.

Each source file is laid out as the public tool writes it (tests/layout_fixtures.py); each
test checks frames upright and in true colour, action chunks equal to the source rows,
instructions and proprio per episode.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from episode_fixtures import read_split, run_convert
from layout_fixtures import (
    SIZE,
    check_samples,
    write_act_sim,
    write_aloha_compressed,
    write_libero,
    write_robomimic,
)

from common.errors import ConfigError
from pipeline.inputs.cameras import CameraError, parse_cameras, set_names
from pipeline.inputs.demos import quat_to_axis_angle
from pipeline.inputs.libero import task_from_file_name
from pipeline.inputs.registry import detect_layout

CHUNK = 4
OPTIONS = {"image_size": SIZE, "chunk": CHUNK, "val_episodes": 0}


def samples_of(out):
    return read_split(out, "train")


def test_act_sim_top_camera_by_its_own_name_and_renamed(tmp_path):
    src = {
        f"episode_{i}": write_act_sim(tmp_path / "in" / f"episode_{i}.hdf5", 5, i) for i in (0, 1)
    }
    for data in src.values():
        data["instructions"] = ["transfer the cube"]
        data["proprio"] = data["qpos"].astype(np.float32)
        data["action"] = data["action"].astype(np.float32)
    summary = run_convert(
        tmp_path / "in", tmp_path / "own", instruction="transfer the cube", **OPTIONS
    )
    assert summary.manifest.layout == "aloha" and summary.manifest.cameras == ["top"]
    check_samples(samples_of(tmp_path / "own"), src, CHUNK)

    run_convert(tmp_path / "in", tmp_path / "renamed", instruction="transfer the cube",
                cameras=("top:head",), **OPTIONS)  # fmt: skip
    samples = samples_of(tmp_path / "renamed")
    for data in src.values():
        data["images"] = {"head": data["images"]["top"]}
    check_samples(samples, src, CHUNK)


def test_known_names_stay_canonical_and_choose_by_either_name():
    known = {"cam_high": "head", "cam_left_wrist": "left_wrist"}
    assert set_names(["cam_high", "top"], known, {}) == {"head": "cam_high", "top": "top"}
    # Renaming onto a taken name: the renamed camera wins, the other keeps its own name.
    assert set_names(["cam_high", "top"], known, {"top": "head"}) == {
        "head": "top",
        "cam_high": "cam_high",
    }
    # A rename may name the camera by its set name too.
    assert set_names(["cam_high"], known, {"head": "front"}) == {"front": "cam_high"}
    choice = parse_cameras(["top:head", "left_wrist"])
    assert choice.wanted == ("top", "left_wrist") and choice.rename == {"top": "head"}
    bad_choices = [(["a:"], "each side"), (["a:B.c"], "cannot name"), (["a:x", "x"], "twice")]
    for bad, message in bad_choices:
        with pytest.raises(CameraError, match=message):
            parse_cameras(bad)


def test_aloha_cameras_chosen_by_own_name_stay_canonical(tmp_path):
    write_act_sim(tmp_path / "in" / "ep.hdf5", 4, 0, cameras=("cam_high", "cam_left_wrist"))
    summary = run_convert(tmp_path / "in", tmp_path / "out", instruction="x",
                          cameras=("cam_left_wrist", "cam_high"), **OPTIONS)  # fmt: skip
    assert summary.manifest.cameras == ["left_wrist", "head"]


def test_aloha_compressed_as_recorded(tmp_path):
    src = {}
    for i in range(2):
        data = write_aloha_compressed(tmp_path / "in" / f"episode_{i}.hdf5", 6, i,
                                      cameras=("cam_high", "cam_left_wrist"))  # fmt: skip
        data["images"] = {"head": data["images"]["cam_high"],
                          "left_wrist": data["images"]["cam_left_wrist"]}  # fmt: skip
        data["proprio"] = data["qpos"]
        data["instructions"] = ["fold the towel"]
        src[f"episode_{i}"] = data
    summary = run_convert(
        tmp_path / "in", tmp_path / "out", instruction="fold the towel", **OPTIONS
    )
    assert summary.manifest.cameras == ["head", "left_wrist"] and summary.manifest.proprio_dim == 14
    check_samples(samples_of(tmp_path / "out"), src, CHUNK)


@pytest.mark.parametrize("kind", ["json", "yaml"])
def test_instructions_per_episode_from_a_mapping_and_folder_files(tmp_path, kind):
    root = tmp_path / "in"
    names = ["towel/ep0.hdf5", "towel/ep1.hdf5", "cups/a/ep0.hdf5", "cups/b/ep0.hdf5", "ep9.hdf5"]
    for i, name in enumerate(names):
        write_act_sim(root / name, 3, i)
    (root / "cups" / "instruction.txt").write_text("stack the cups\n")
    (root / "cups" / "b" / "instruction.txt").write_text("unstack the cups")
    mapping = {"towel": "fold the towel", "towel/ep1.hdf5": "unfold the towel"}
    if kind == "json":
        given = tmp_path / "tasks.json"
        given.write_text(json.dumps(mapping))
    else:
        given = tmp_path / "tasks.yaml"
        given.write_text("towel: fold the towel\n'towel/ep1.hdf5': unfold the towel\n")
    summary = run_convert(root, tmp_path / "out", instruction=str(given), **OPTIONS)
    expected = {"towel-ep0": ["fold the towel"], "towel-ep1": ["unfold the towel"],
                "cups-a-ep0": ["stack the cups"], "cups-b-ep0": ["unstack the cups"]}  # fmt: skip
    got = {s["meta"]["episode"]: s["meta"]["instructions"] for s in samples_of(tmp_path / "out")}
    assert got == expected
    # ep9 is under no mapping entry and no instruction.txt: skipped, and says why.
    assert summary.skipped == [("ep9.hdf5", "has no language instructions")]


def test_instruction_mapping_errors_name_the_file(tmp_path):
    write_act_sim(tmp_path / "in" / "ep.hdf5", 3, 0)
    bad = tmp_path / "tasks.json"
    for text, message in [("{", "not valid JSON"), ("[1]", "expected a mapping"),
                          ('{"ep.hdf5": 3}', "non-empty string")]:  # fmt: skip
        bad.write_text(text)
        with pytest.raises(ConfigError, match=f"{bad}.*{message}"):
            run_convert(tmp_path / "in", tmp_path / "out", instruction=str(bad), **OPTIONS)
    assert not (tmp_path / "out").exists()


def _libero_folder(root):
    files = {
        "libero_10/KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it_demo.hdf5":
            ([5, 3], "turn on the stove and put the moka pot on it"),
        "libero_10/LIVING_ROOM_SCENE2_put_both_the_alphabet_soup_and_the_tomato_sauce_in_the_basket_demo.hdf5":
            ([4, 6, 2], None),
    }  # fmt: skip
    src = {}
    for n, (relative, (demos, instruction)) in enumerate(files.items()):
        path = root / relative
        data = write_libero(path, demos, n, instruction)
        text = instruction or task_from_file_name(path)
        for demo, d in data.items():
            d["instructions"] = [text]
            key = relative.removesuffix(".hdf5").replace("/", "-") + "-" + demo
            src[key] = d
    return src


def test_libero_files_convert_upright_with_state_and_language(tmp_path):
    src = _libero_folder(tmp_path / "in")
    assert detect_layout(tmp_path / "in") == "libero"
    summary = run_convert(tmp_path / "in", tmp_path / "out", **OPTIONS)
    m = summary.manifest
    assert (m.layout, m.cameras) == ("libero", ["head", "left_wrist"])
    assert (m.action_dim, m.proprio_dim) == (7, 8)
    paths = [e.path for e in m.episodes]
    assert paths[:2] == [
        "libero_10/KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it_demo.hdf5#demo_0",
        "libero_10/KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it_demo.hdf5#demo_1",
    ]
    assert sorted(e.key for e in m.episodes) == sorted(src) and len(paths) == 5
    samples = samples_of(tmp_path / "out")
    assert len(samples) == 5 + 3 + 4 + 6 + 2
    check_samples(samples, src, CHUNK)
    # The second file has no problem_info: its task comes from its name, as LIBERO spells it.
    assert src[m.episodes[-1].key]["instructions"] == [
        "put both the alphabet soup and the tomato sauce in the basket"
    ]


def test_robomimic_needs_an_instruction_and_gets_libero_state(tmp_path):
    data = write_robomimic(tmp_path / "in" / "lift" / "image.hdf5", [4, 5], 0)
    assert detect_layout(tmp_path / "in") == "robomimic"
    with pytest.raises(ConfigError, match="robomimic episodes carry no language"):
        run_convert(tmp_path / "in", tmp_path / "out", **OPTIONS)
    summary = run_convert(tmp_path / "in", tmp_path / "out", instruction="lift the cube", **OPTIONS)
    assert summary.manifest.proprio_dim == 8 and summary.manifest.cameras == ["head", "left_wrist"]
    src = {}
    for demo, d in data.items():
        axis_angle = quat_to_axis_angle(d["quat"])
        d["proprio"] = np.concatenate([d["pos"], axis_angle, d["gripper"]], 1).astype(np.float32)
        d["instructions"] = ["lift the cube"]
        src[f"lift-image-{demo}"] = d
    check_samples(samples_of(tmp_path / "out"), src, CHUNK)


def test_axis_angle_matches_rotation_about_each_axis():
    half = np.pi / 6  # a 60-degree turn about z: quaternion (0, 0, sin 30, cos 30)
    quat = np.array([[0, 0, np.sin(half), np.cos(half)], [0, 0, 0, 1.0]])
    np.testing.assert_allclose(quat_to_axis_angle(quat), [[0, 0, np.pi / 3], [0, 0, 0]], atol=1e-12)


def _build_for_training(layout: str, root) -> tuple[dict, tuple[str, ...]]:
    """A small input of each layout; the options it needs and the cameras the set gets."""
    if layout == "libero":
        _libero_folder(root)
        return {}, ("head", "left_wrist")
    if layout == "robomimic":
        write_robomimic(root / "image.hdf5", [5, 4], 0)
        return {"instruction": "lift the cube"}, ("head", "left_wrist")
    if layout == "lerobot":
        from layout_fixtures import write_lerobot_v3

        write_lerobot_v3(root, [6, 5], ["pick the cube", "place the cube"])
        return {}, ("head", "wrist")
    write = write_aloha_compressed if layout == "aloha_compressed" else write_act_sim
    for i in range(2):
        write(root / f"episode_{i}.hdf5", 6, i)
    cameras = ("head",) if layout == "aloha_compressed" else ("top",)
    return {"instruction": "transfer the cube"}, cameras


@pytest.mark.parametrize(
    "layout", ["act_top", "aloha_compressed", "libero", "robomimic", "lerobot"]
)
def test_a_short_train_runs_on_each_layout(tmp_path, layout, capsys):
    from trainer.run.checkpoint import load_config
    from trainer.run.loop import train
    from trainer.run.metrics import read_metrics
    from trainer.run.train_config import TrainConfig

    options, expected = _build_for_training(layout, tmp_path / "in")
    # The tiny base takes the model's own 224-pixel images.
    run_convert(tmp_path / "in", tmp_path / "shards", **{**OPTIONS, "image_size": 224, **options})
    cfg = TrainConfig(shards=(str(tmp_path / "shards"),), run_dir=tmp_path / "run", base="tiny",
                      lora_rank=4, batch_size=2, max_steps=3, save_every=3, device="cpu",
                      workers=0)  # fmt: skip
    train(cfg)
    # Without --cameras: head,left_wrist when the set has both, else its own cameras, said,
    # and saved with the run.
    assert load_config(cfg.run_dir / "step-3").cameras == expected
    said = f"--cameras {','.join(expected)}: the set has no head,left_wrist"
    assert (said in capsys.readouterr().out) == (expected != ("head", "left_wrist"))
    losses = [r["loss"] for r in read_metrics(cfg.run_dir)]
    assert len(losses) == 3 and all(np.isfinite(losses))


@pytest.mark.parametrize("key_chars", [10, 110])
def test_preview_keeps_images_full_size_whatever_the_key_length(key_chars):
    from pipeline.tools.preview import CELL_IN, sheet_figure

    rng = np.random.default_rng(0)
    samples = [
        {
            "key": "k" * key_chars + f"_{t:06d}",
            "meta": {
                "instructions": ["put both the soup and the sauce in the basket"],
                "valid": 4,
                "t": t,
            },
            "images": {c: rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8) for c in ("head", "top")},
            "actions": rng.normal(size=(4, 7)).astype(np.float32),
        }  # fmt: skip
        for t in range(3)
    ]
    fig = sheet_figure(samples, ["head", "top"])
    fig.canvas.draw()
    for ax in fig.axes:
        box = ax.get_window_extent()
        # Each cell keeps most of its width and height: nothing squeezed by a caption.
        assert box.width > 0.6 * CELL_IN * fig.dpi and box.height > 0.5 * CELL_IN * fig.dpi
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width + 1


def test_cli_converts_libero_and_refuses_a_bad_mapping_in_one_line(tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import main

    _libero_folder(tmp_path / "in")
    result = CliRunner().invoke(
        main, ["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet", "--workers", "1",
               "--image-size", "32", "--cameras", "agentview_rgb:front"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "cameras front; skipped 0 episode(s)" in result.output
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    write_act_sim(tmp_path / "aloha" / "ep.hdf5", 3, 0)
    result = CliRunner().invoke(
        main, ["convert", str(tmp_path / "aloha"), str(tmp_path / "out2"), "--quiet",
               "--instruction", str(tmp_path / "bad.yaml")],
    )  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path / 'bad.yaml'}: not valid YAML" in lines[0]


def test_rotate180_equals_reversing_both_image_axes():
    from pipeline.inputs.frames import rotate180

    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), np.uint8)
    turned = rotate180(frames)
    np.testing.assert_array_equal(turned, frames[:, ::-1, ::-1])
    assert turned.flags["C_CONTIGUOUS"]


def test_libero_parts_merge_to_the_one_machine_set(tmp_path):
    import hashlib

    from pipeline.convert.merge import MergeConfig, merge

    write_libero(tmp_path / "in" / "TASK_do_it_demo.hdf5", [3] * 12, 0, "do it")
    options = {**OPTIONS, "val_episodes": 2, "shard_samples": 7}
    run_convert(tmp_path / "in", tmp_path / "single", **options)
    parts = [tmp_path / f"part{i}" for i in (1, 2)]
    for i, part in enumerate(parts, start=1):
        run_convert(tmp_path / "in", part, part=(i, 2), **options)
    merge(MergeConfig(tuple(parts), tmp_path / "merged", progress=False))

    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}

    assert digests(tmp_path / "merged") == digests(tmp_path / "single")
