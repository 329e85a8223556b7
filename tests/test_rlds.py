"""RLDS sets written by tensorflow-datasets convert to what TFDS itself reads from them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from episode_fixtures import read_split, run_convert
from layout_fixtures import psnr
from rlds_fixtures import ALOHA, ARRAY_RECORD, ASSETS, LIBERO, OXE, copy_set, recorded

from pipeline.convert.stages import ConvertError
from pipeline.inputs.layout import LayoutError
from pipeline.inputs.registry import detect_layout
from shards.format import FORMAT_VERSION, resize_square
from shards.manifest import ManifestError, parse_manifest, read_manifest

pytest.importorskip("google_crc32c", reason="the rlds extra is not installed")

CHUNK, SIZE = 4, 32
OPTIONS = {"image_size": SIZE, "chunk": CHUNK}


def check_against_tfds(out, name: str, cameras: dict[str, str], action_dim: int) -> None:
    """Every sample of the set at `out` against what TFDS decoded: actions and state exact,
    the instruction, and the first and last frame of each camera by PSNR."""
    truth = recorded(name)
    manifest = read_manifest(out)
    by_key = {e.key: e for e in manifest.episodes if e.status == "ok"}
    assert manifest.action_dim == action_dim and manifest.layout == "rlds"
    assert len(by_key) == len(truth)
    samples = [s for split in ("train", "val") for s in read_split(out, split)]
    assert len(samples) == sum(len(t["action"]) for t in truth.values())
    for s in samples:
        entry = by_key[s["meta"]["episode"]]
        src = truth[entry.source["file_path"]] if "file_path" in entry.source else None
        src = src if src is not None else truth[f"train/{int(entry.path.split('#')[1])}"]
        assert entry.split == entry.source["split"] == str(src["split"])
        t, steps = s["meta"]["t"], len(src["action"])
        rows = src["action"][t : t + CHUNK]
        np.testing.assert_array_equal(s["actions"][: len(rows)], rows)
        if "state" in src:
            assert s["meta"]["proprio"] == [float(v) for v in src["state"][t]]
        else:
            assert "proprio" not in s["meta"]
        assert s["meta"]["instructions"] == [str(src["instruction"][t])]
        if t in (0, steps - 1):
            for own, camera in cameras.items():
                frame = src[own][0 if t == 0 else 1]
                want = resize_square(np.ascontiguousarray(frame), SIZE)
                assert psnr(s["images"][camera], want) > 35, (camera, t)
                assert psnr(s["images"][camera], want[..., ::-1]) < 25  # red and blue kept


def test_oft_libero_set_converts_as_tfds_reads_it(tmp_path):
    out = tmp_path / "out"
    summary = run_convert(ASSETS / LIBERO, out, val_episodes=0, **OPTIONS)
    assert summary.skipped == []
    manifest = read_manifest(out)
    assert manifest.dataset == LIBERO and manifest.cameras == ["head", "left_wrist"]
    assert manifest.proprio_dim == 8  # observation/state, not the 7-dim joint_state
    # Three episodes in two record files; each entry says where TFDS's writer got it.
    assert sorted(e.path for e in manifest.episodes) == [
        f"1.0.0/{LIBERO}-train.tfrecord-00000-of-00002#0",
        f"1.0.0/{LIBERO}-train.tfrecord-00000-of-00002#1",
        f"1.0.0/{LIBERO}-train.tfrecord-00001-of-00002#0",
    ]
    assert sorted(e.source["file_path"] for e in manifest.episodes) == [
        f"/data/libero/demo_{i}.hdf5" for i in range(3)
    ]
    check_against_tfds(out, LIBERO, {"image": "head", "wrist_image": "left_wrist"}, 7)


def test_robot_libero_on_a_no_noops_set_drops_nothing_and_inverts_the_gripper(tmp_path):
    """OFT's `*_no_noops` sets were filtered when OFT wrote them, so its no-op rule drops no
    step (the set's actions have no still step); their gripper is still LIBERO's raw -1..+1,
    which OFT's loader clips to [0, 1] and inverts when it reads it, and so do we."""
    out = tmp_path / "out"
    run_convert(ASSETS / LIBERO, out, val_episodes=0, image_size=SIZE, robot="libero", chunk=None)
    manifest = read_manifest(out)
    truth = recorded(LIBERO)
    assert manifest.chunk == 8 and manifest.options["robot"] == "libero"
    assert manifest.dropped_steps() == 0
    steps = {e.source["file_path"]: e.steps for e in manifest.episodes}
    assert steps == {path: len(src["action"]) for path, src in truth.items()}
    by_key = {e.key: e.source["file_path"] for e in manifest.episodes}
    gripper_values = []
    for s in read_split(out, "train"):
        src, t = truth[by_key[s["meta"]["episode"]]], s["meta"]["t"]
        rows = src["action"][t : t + 8]
        np.testing.assert_array_equal(s["actions"][: len(rows), :6], rows[:, :6])
        np.testing.assert_array_equal(s["actions"][: len(rows), 6], 1 - np.clip(rows[:, 6], 0, 1))
        assert s["meta"]["proprio"] == [float(v) for v in src["state"][t]]
        gripper_values += src["action"][t : t + 1, 6].tolist()
    assert min(gripper_values) < 0 < max(gripper_values)  # both sides of the clip were seen
    stats = json.loads((out / "stats.json").read_text())
    assert stats[manifest.dataset]["action"]["mask"] == [True] * 6 + [False]


def test_aloha_set_keeps_its_val_split_and_three_cameras(tmp_path):
    out = tmp_path / "out"
    run_convert(ASSETS / ALOHA, out, **OPTIONS)
    manifest = read_manifest(out)
    assert manifest.cameras == ["head", "left_wrist", "right_wrist"]
    assert (manifest.episode_count("train"), manifest.episode_count("val")) == (3, 1)
    assert manifest.options["val_episodes"] is None
    cameras = {
        "image": "head",
        "left_wrist_image": "left_wrist",
        "right_wrist_image": "right_wrist",
    }
    check_against_tfds(out, ALOHA, cameras, 14)
    # --val-episodes says otherwise: a seeded choice over all four, as for other layouts.
    run_convert(ASSETS / ALOHA, tmp_path / "none", val_episodes=0, **OPTIONS)
    assert read_manifest(tmp_path / "none").episode_count("val") == 0


def test_open_x_embodiment_names_and_action_dict(tmp_path):
    """RT-1's names: observation/image (PNG), observation/natural_language_instruction, and an
    action dict read as world_vector + rotation_delta + gripper_closedness_action."""
    out = tmp_path / "out"
    run_convert(ASSETS / OXE, out, val_episodes=0, **OPTIONS)
    assert read_manifest(out).proprio_dim is None
    check_against_tfds(out, OXE, {"image": "head"}, 7)


def test_array_record_set_converts_as_tfds_reads_its_tfrecord_twin(tmp_path):
    """The ArrayRecord set holds the LIBERO set's episodes, so TFDS's reading of that applies."""
    pytest.importorskip("array_record", reason="the rlds extra (array-record) is not installed")
    run_convert(ASSETS / ARRAY_RECORD, tmp_path / "out", val_episodes=0, **OPTIONS)
    assert (
        read_manifest(tmp_path / "out")
        .episodes[0]
        .path.startswith(f"1.0.0/{ARRAY_RECORD}-train.array_record-00000-of-00001#")
    )
    check_against_tfds(tmp_path / "out", LIBERO, {"image": "head", "wrist_image": "left_wrist"}, 7)


def test_output_is_the_same_for_any_worker_count(tmp_path):
    run_convert(ASSETS / LIBERO, tmp_path / "one", workers=1, **OPTIONS)
    run_convert(ASSETS / LIBERO, tmp_path / "two", workers=2, **OPTIONS)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_data_dataset_and_version_folders(tmp_path):
    assert detect_layout(ASSETS) == "rlds"
    assert detect_layout(ASSETS / LIBERO / "1.0.0") == "rlds"
    run_convert(ASSETS / LIBERO / "1.0.0", tmp_path / "v", **OPTIONS)
    assert read_manifest(tmp_path / "v").dataset == LIBERO  # named after its dataset
    run_convert(ASSETS, tmp_path / "d", rlds_dataset=OXE, **OPTIONS)
    manifest = read_manifest(tmp_path / "d")
    assert manifest.dataset == OXE
    assert manifest.episodes[0].path.startswith(f"{OXE}/0.1.0/{OXE}-train.tfrecord")
    with pytest.raises(LayoutError, match=f"holds 4 TFDS datasets .*{LIBERO}.*--rlds-dataset"):
        run_convert(ASSETS, tmp_path / "x", **OPTIONS)
    with pytest.raises(LayoutError, match="no dataset 'bridge' here"):
        run_convert(ASSETS, tmp_path / "x", rlds_dataset="bridge", **OPTIONS)
    assert not (tmp_path / "x").exists()


def test_the_newest_of_two_versions_is_read(tmp_path):
    folder = copy_set(OXE, tmp_path)
    newer = folder / "0.2.0"
    (folder / "0.1.0").rename(newer)
    copy = copy_set(OXE, tmp_path / "old")
    (copy / "0.1.0").rename(folder / "0.1.0")
    run_convert(folder, tmp_path / "out", **OPTIONS)
    assert {e.path.split("/")[0] for e in read_manifest(tmp_path / "out").episodes} == {"0.2.0"}


def test_instruction_option_gives_language_only_to_a_set_without(tmp_path):
    folder = copy_set(OXE, tmp_path)
    features = folder / "0.1.0" / "features.json"
    text = features.read_text().replace('"natural_language_instruction"', '"language_embedding"')
    features.write_text(text)
    with pytest.raises(ConvertError, match="none of 2 episodes.*has no language instructions"):
        run_convert(folder, tmp_path / "none", **OPTIONS)
    run_convert(folder, tmp_path / "out", instruction="pick up the can", val_episodes=0, **OPTIONS)
    samples = read_split(tmp_path / "out", "train")
    assert {tuple(s["meta"]["instructions"]) for s in samples} == {("pick up the can",)}
    # As with LIBERO's problem_info, a set's own language wins over --instruction.
    run_convert(ASSETS / OXE, tmp_path / "own", instruction="pick up the can", val_episodes=0,
                **OPTIONS)  # fmt: skip
    own = {tuple(s["meta"]["instructions"]) for s in read_split(tmp_path / "own", "train")}
    assert own == {(str(t["instruction"][0]),) for t in recorded(OXE).values()}


def test_only_manifests_with_a_source_are_format_version_2(tmp_path):
    from episode_fixtures import make_episodes

    make_episodes(tmp_path / "eps", episodes=2, steps=4)
    run_convert(tmp_path / "eps", tmp_path / "out", val_episodes=0)
    data = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert data["format_version"] == 1  # readers from before `source` still read it
    assert all("source" not in e for e in data["episodes"])
    run_convert(ASSETS / OXE, tmp_path / "rlds", val_episodes=0, **OPTIONS)
    text = (tmp_path / "rlds" / "manifest.json").read_text()
    assert (
        json.loads(text)["format_version"] == 2 == read_manifest(tmp_path / "rlds").format_version
    )
    # A reader that knows only older versions refuses a set by its version, saying why.
    newer = text.replace('"format_version": 2', f'"format_version": {FORMAT_VERSION + 1}')
    with pytest.raises(ManifestError, match="is newer than this tool reads .*upgrade vla-shards"):
        parse_manifest(newer, "manifest.json")


def test_parts_merge_to_the_one_machine_set_val_split_included(tmp_path):
    from pipeline.convert.merge import MergeConfig, merge

    run_convert(ASSETS / ALOHA, tmp_path / "whole", **OPTIONS)
    parts = []
    for i in (1, 2):
        parts.append(tmp_path / f"part{i}")
        run_convert(ASSETS / ALOHA, parts[-1], part=(i, 2), **OPTIONS)
    merge(MergeConfig(tuple(parts), tmp_path / "merged", progress=False))
    whole = read_manifest(tmp_path / "whole")
    assert whole.episode_count("val") == 1
    for name in sorted(p.name for p in (tmp_path / "whole").iterdir()):
        assert (tmp_path / "merged" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
