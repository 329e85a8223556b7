"""Damaged or unusual RLDS sets: one line saying what is wrong; nothing half-written; the rest
of a set converts when one record is bad."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from episode_fixtures import run_convert
from rlds_fixtures import LIBERO, OXE, copy_set, record_files, rewrite_record

from pipeline.cli import main
from pipeline.inputs.layout import LayoutError
from pipeline.rlds.tfrecord import HEADER, record_offsets
from shards.manifest import read_manifest

pytest.importorskip("google_crc32c", reason="the rlds extra is not installed")

OPTIONS = {"image_size": 32, "chunk": 4, "val_episodes": 0}


def convert_cli(source, out, *args):
    return CliRunner().invoke(main, ["convert", str(source), str(out), "--quiet", *args])


def skipped(out) -> dict[str, str]:
    return {e.path: e.reason for e in read_manifest(out).skipped()}


def test_a_flipped_byte_fails_that_episode_only(tmp_path):
    folder = copy_set(LIBERO, tmp_path)
    path = record_files(folder)[0]
    second = list(record_offsets(path))[1]
    data = bytearray(path.read_bytes())
    data[second + HEADER + 100] ^= 0x01  # inside the second record's data
    path.write_bytes(bytes(data))
    result = convert_cli(folder, tmp_path / "out", "--val-episodes", "0")
    assert result.exit_code == 0, result.output
    reasons = skipped(tmp_path / "out")
    assert list(reasons) == [f"1.0.0/{path.name}#1"]
    assert reasons[f"1.0.0/{path.name}#1"] == (
        f"record at byte {second}: its data fails its checksum (corrupt file)"
    )
    assert read_manifest(tmp_path / "out").episode_count("train") == 2


def test_a_corrupt_length_fails_the_records_from_there(tmp_path):
    folder = copy_set(LIBERO, tmp_path)
    path = record_files(folder)[0]
    data = bytearray(path.read_bytes())
    data[2] ^= 0x40  # the first record's length: nothing after it can be found
    path.write_bytes(bytes(data))
    run_convert(folder, tmp_path / "out", **OPTIONS)
    assert skipped(tmp_path / "out") == {
        f"1.0.0/{path.name}#0": "record at byte 0: its length fails its checksum (corrupt file)"
    }


def test_a_truncated_file_fails_its_last_episode(tmp_path):
    folder = copy_set(LIBERO, tmp_path)
    path = record_files(folder)[0]
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size - 500])
    run_convert(folder, tmp_path / "out", **OPTIONS)
    reasons = skipped(tmp_path / "out")
    assert list(reasons) == [f"1.0.0/{path.name}#1"]
    assert "is truncated" in reasons[f"1.0.0/{path.name}#1"]
    assert read_manifest(tmp_path / "out").episode_count("train") == 2


def test_missing_features_json_is_one_line_and_nothing_is_written(tmp_path):
    folder = copy_set(LIBERO, tmp_path)
    (folder / "1.0.0" / "features.json").unlink()
    result = convert_cli(folder, tmp_path / "out")
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f"Error: {folder / '1.0.0' / 'features.json'} is missing: TFDS writes it beside "
        "dataset_info.json, and without it the shapes and dtypes of the records are unknown"
    ]
    assert not (tmp_path / "out").exists()


def _edit_features(folder, version, edit) -> None:
    path = folder / version / "features.json"
    data = json.loads(path.read_text())
    edit(data["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"])
    path.write_text(json.dumps(data))


def test_rlds_dataset_for_another_layout_is_refused_not_ignored(tmp_path):
    from episode_fixtures import make_episodes

    make_episodes(tmp_path / "eps", episodes=2, steps=4)
    result = convert_cli(tmp_path / "eps", tmp_path / "out", "--rlds-dataset", OXE)
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f"Error: --rlds-dataset: {tmp_path / 'eps'} is a processed input, which holds one "
        "dataset; the option chooses among the datasets of a TFDS data folder"
    ]
    assert not (tmp_path / "out").exists()


def test_a_feature_type_we_do_not_read_is_named(tmp_path):
    folder = copy_set(LIBERO, tmp_path)

    def zlib_action(steps):
        steps["features"]["action"]["tensor"]["encoding"] = "zlib"

    _edit_features(folder, "1.0.0", zlib_action)
    with pytest.raises(LayoutError) as caught:
        run_convert(folder, tmp_path / "out", **OPTIONS)
    assert str(caught.value) == (
        f"{folder / '1.0.0'}: steps/action is a Tensor stored with encoding 'zlib'"
    )
    assert not (tmp_path / "out").exists()


def test_an_action_dict_without_a_known_mapping_names_its_keys(tmp_path):
    folder = copy_set(OXE, tmp_path)

    def drop_rotation(steps):
        del steps["features"]["action"]["featuresDict"]["features"]["rotation_delta"]

    _edit_features(folder, "0.1.0", drop_rotation)
    result = convert_cli(folder, tmp_path / "out")
    assert result.exit_code != 0
    assert result.output.strip() == (
        f"Error: {folder / '0.1.0'}: steps/action is a dict of gripper_closedness_action, "
        "terminate_episode, world_vector; a dict action is read as world_vector + "
        "rotation_delta + gripper_closedness_action|open_gripper; this one lacks rotation_delta"
    )


def test_an_image_that_does_not_decode_fails_that_episode(tmp_path):
    folder = copy_set(OXE, tmp_path)
    path = record_files(folder)[0]

    def garble(example):
        images = example.features.feature["steps/observation/image"].bytes_list.value
        images[-1] = b"\x89PNG\r\n\x1a\n" + b"\0" * 40  # a PNG signature, then nothing valid

    rewrite_record(path, 1, garble)
    run_convert(folder, tmp_path / "out", **OPTIONS)
    reason = skipped(tmp_path / "out")[f"0.1.0/{path.name}#1"]
    assert reason.startswith("camera 'head' frame ") and "does not decode" in reason
    assert "\n" not in reason


def test_an_instruction_that_changes_mid_episode_fails_that_episode(tmp_path):
    folder = copy_set(LIBERO, tmp_path)
    path = record_files(folder)[0]

    def change(example):
        texts = example.features.feature["steps/language_instruction"].bytes_list.value
        texts[3] = b"something else"

    rewrite_record(path, 0, change)
    run_convert(folder, tmp_path / "out", **OPTIONS)
    assert skipped(tmp_path / "out") == {
        f"1.0.0/{path.name}#0": (
            "steps/language_instruction changes within the episode, to 'something else' at step 3"
        )
    }


def test_values_that_do_not_fit_the_shapes_fail_that_episode(tmp_path):
    folder = copy_set(LIBERO, tmp_path)
    path = record_files(folder)[0]

    def extra_value(example):
        example.features.feature["steps/action"].float_list.value.append(0.5)

    rewrite_record(path, 0, extra_value)
    run_convert(folder, tmp_path / "out", **OPTIONS)
    reason = skipped(tmp_path / "out")[f"1.0.0/{path.name}#0"]
    assert reason.startswith("steps/action has ") and "not a whole number of (7,) steps" in reason


def test_a_set_stored_in_another_format_is_refused(tmp_path):
    folder = copy_set(LIBERO, tmp_path)
    info_path = folder / "1.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "riegeli"
    info_path.write_text(json.dumps(info))
    with pytest.raises(LayoutError, match="records stored as riegeli; this reads tfrecord and"):
        run_convert(folder, tmp_path / "out", **OPTIONS)


def test_a_missing_record_file_is_named(tmp_path):
    folder = copy_set(LIBERO, tmp_path)
    record_files(folder)[1].unlink()
    with pytest.raises(LayoutError, match="00001-of-00002 is missing: dataset_info.json lists 2"):
        run_convert(folder, tmp_path / "out", **OPTIONS)


def test_no_tensorflow_import_anywhere_in_the_project():
    """The converter reads TFDS's files with its own code; only the fixture generator and the
    benchmark's subprocess run tensorflow-datasets, in a throwaway venv."""
    from pathlib import Path

    root = Path(__file__).parents[1]
    for package in ("common", "pipeline", "shards", "stats", "trainer"):
        for path in (root / package).rglob("*.py"):
            for line in path.read_text().splitlines():
                words = line.split()
                if words[:1] in (["import"], ["from"]) and len(words) > 1:
                    assert not words[1].startswith("tensorflow"), f"{path}: {line}"


def test_a_damaged_array_record_file_says_so(tmp_path):
    pytest.importorskip("array_record", reason="the rlds extra (array-record) is not installed")
    folder = copy_set("libero_tiny_array_record", tmp_path)
    path = next(folder.rglob("*.array_record-*"))
    data = bytearray(path.read_bytes())
    data[5000] ^= 0xFF  # inside the first record
    path.write_bytes(bytes(data))
    run_convert(folder, tmp_path / "out", **OPTIONS)
    reasons = skipped(tmp_path / "out")  # TFDS writes each record in its own chunk
    assert list(reasons) == [f"1.0.0/{path.name}#0"]
    assert reasons[f"1.0.0/{path.name}#0"].startswith(
        "record 0 unreadable (Corrupted Riegeli/records file: chunk data hash mismatch"
    )
