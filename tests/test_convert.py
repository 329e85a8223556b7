"""Tests for `convert()`: round trip, layouts, bad input, output safety, determinism, split."""

import io
import json
import shutil
from collections import Counter

import h5py
import numpy as np
import pytest
import simplejpeg
import webdataset
from episode_fixtures import (
    CHUNK,
    file_hashes,
    leftovers,
    make_episodes,
    read_dataset,
    read_split,
    run_convert,
    source_actions,
    source_proprio,
    train_paths,
)
from PIL import Image

import pipeline.convert.stages
from common.errors import ConfigError
from pipeline.config import PlanConfig
from pipeline.convert.output import OutputError
from pipeline.convert.stages import ConvertError, plan_episodes
from pipeline.generate.synthetic import RED, instructions, square_box
from pipeline.inputs.layout import LayoutError
from shards.format import MANIFEST_FILE, JpegStorage, camera_member, jpeg_storage
from shards.manifest import read_manifest
from shards.samples import iter_raw_samples

TASK1_STEPS, TASK2_STEPS = 12, 10


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    """Episodes in two sub-folders (same file names, other lengths), converted once."""
    root = tmp_path_factory.mktemp("nested")
    episodes = root / "episodes"
    make_episodes(episodes / "task1", episodes=2, steps=TASK1_STEPS, seed=0)
    make_episodes(episodes / "task2", episodes=3, steps=TASK2_STEPS, seed=1)
    shards = root / "shards"
    summary = run_convert(
        episodes, shards, val_episodes=1, shard_samples=10, name="demo", cameras=("head", "low")
    )
    return episodes, shards, summary


def all_samples(shards):
    return read_split(shards, "train") + read_split(shards, "val")


def test_round_trip_actions_and_meta(nested):
    episodes, shards, _ = nested
    manifest = read_manifest(shards)
    sources = {e.key: episodes / e.path for e in manifest.episodes}
    assert set(sources) == {
        "task1-episode_0",
        "task1-episode_1",
        "task2-episode_0",
        "task2-episode_1",
        "task2-episode_2",
    }
    samples = all_samples(shards)
    for sample in samples:
        meta = sample["meta"]
        path = sources[meta["episode"]]
        actions = source_actions(path)
        t, steps = meta["t"], len(actions)
        expected = actions[t : t + CHUNK]
        valid = len(expected)
        expected = np.concatenate([expected, np.repeat(actions[-1:], CHUNK - valid, axis=0)])
        assert sample["actions"].dtype == np.float32 and sample["actions"].shape == (CHUNK, 14)
        np.testing.assert_array_equal(sample["actions"], expected)
        index = int(path.stem.split("_")[1])
        assert meta == {
            "episode": meta["episode"],
            "t": t,
            "steps": steps,
            "valid": min(CHUNK, steps - t),
            "instructions": instructions(index)["seen"],
            "unseen": instructions(index)["unseen"],
            "dataset": "demo",
        }
        assert sample["key"] == f"{meta['episode']}_{t:06d}"
        assert "." not in sample["key"]
        assert sample["members"] == ["actions.npy", "head.jpg", "low.jpg", "meta.json"]
    # Padding really happened: the last samples of an episode have fewer real rows.
    assert {s["meta"]["valid"] for s in samples} == set(range(1, CHUNK + 1))


def test_every_timestep_appears_exactly_once(nested):
    episodes, shards, _ = nested
    seen = Counter((s["meta"]["episode"], s["meta"]["t"]) for s in all_samples(shards))
    expected = {(f"task1-episode_{i}", t) for i in range(2) for t in range(TASK1_STEPS)}
    expected |= {(f"task2-episode_{i}", t) for i in range(3) for t in range(TASK2_STEPS)}
    assert set(seen) == expected
    assert max(seen.values()) == 1
    keys = [s["key"] for s in all_samples(shards)]
    assert len(set(keys)) == len(keys)
    assert "task1-episode_0_000010" in keys and "task2-episode_0_000009" in keys


def test_splits_are_disjoint_by_episode(nested):
    _, shards, summary = nested
    train = {s["meta"]["episode"] for s in read_split(shards, "train")}
    val = {s["meta"]["episode"] for s in read_split(shards, "val")}
    assert len(val) == 1 and len(train) == 4 and not train & val
    manifest = summary.manifest
    assert {e.key for e in manifest.episodes if e.split == "val"} == val


def test_train_shards_mix_episodes_and_roll_every_shard_samples(nested):
    _, shards, summary = nested
    train = summary.manifest.shards("train")
    total = summary.manifest.samples("train")
    assert total in (44, 42)  # 54 samples minus one val episode of 10 or 12 steps
    assert [s.samples for s in train] == [10] * (total // 10) + [total % 10]
    assert [s.name for s in train] == [f"train-{i:06d}.tar" for i in range(len(train))]
    samples = read_split(shards, "train")
    assert Counter(s["shard"] for s in samples) == {s.name: s.samples for s in train}
    first = [s for s in samples if s["shard"] == "train-000000.tar"]
    assert len({s["meta"]["episode"] for s in first}) >= 3
    order = [(s["meta"]["episode"], s["meta"]["t"]) for s in samples]
    assert order != sorted(order)


def test_images_match_a_bicubic_reference(tmp_path):
    # ALOHA-sized frames, so the resize shrinks and squashes as it does for real data.
    paths = make_episodes(tmp_path / "in", episodes=1, steps=4, image_size=(480, 640))
    # Full-resolution chroma, so what is measured is the resize (4:2:0 costs these noisy
    # synthetic frames about 8 dB more; see the next test).
    options = {
        "val_episodes": 0,
        "image_size": 224,
        "cameras": ("head",),
        "jpeg_subsampling": "444",
    }
    run_convert(tmp_path / "in", tmp_path / "out", **options)
    frames = read_dataset(paths[0], "head_camera_image")
    samples = read_split(tmp_path / "out", "train")
    assert len(samples) == 4
    for sample in samples:
        image = sample["images"]["head"]
        assert image.shape == (224, 224, 3) and image.dtype == np.uint8
        source = Image.fromarray(frames[sample["meta"]["t"]])
        reference = np.asarray(source.resize((224, 224), Image.Resampling.BICUBIC), np.float64)
        mse = np.mean((image.astype(np.float64) - reference) ** 2)
        # About 45 dB here at quality 95; a nearest-neighbour resize scores about 34.
        assert 10 * np.log10(255**2 / mse) > 38


@pytest.mark.parametrize("asked", [None, "444"])
def test_frames_are_stored_with_the_chroma_subsampling_asked(tmp_path, asked):
    make_episodes(tmp_path / "in", episodes=1, steps=3, image_size=(64, 64))
    options = {"val_episodes": 0, "cameras": ("head",)}
    run_convert(
        tmp_path / "in",
        tmp_path / "out",
        **options,
        **({"jpeg_subsampling": asked} if asked else {}),
    )
    expected = asked or "420"  # RLDS's (TFDS's) way, the default
    manifest = read_manifest(tmp_path / "out")
    assert jpeg_storage(manifest.options) == JpegStorage(95, expected)
    with open(tmp_path / "out" / manifest.shards("train")[0].name, "rb") as f:
        raws = list(iter_raw_samples(f, "train-000000.tar"))
    assert len(raws) == 3
    assert {simplejpeg.decode_jpeg_header(r[camera_member("head")])[3] for r in raws} == {expected}


def test_a_set_recorded_before_the_subsampling_was_holds_444():
    assert jpeg_storage({"jpeg_quality": 90}) == JpegStorage(90, "444")
    assert jpeg_storage({}) is None


def test_robotwin_colours_come_back_in_rgb_order(tmp_path):
    size, out = (60, 80), 64
    make_episodes(tmp_path / "in", "robotwin", episodes=2, steps=6, image_size=size)
    summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0, image_size=out)
    assert summary.manifest.cameras == ["head", "low", "left_wrist", "right_wrist"]
    samples = read_split(tmp_path / "out", "train")
    assert len(samples) == 12
    margin = 3  # resizing and 4:2:0 chroma blur the square's edges
    for sample in samples:
        for camera, image in sample["images"].items():
            episode = int(sample["meta"]["episode"].removeprefix("data-episode"))
            rows, cols = square_box(camera, sample["meta"]["t"], 6, size, episode)
            r0, r1 = (round(v * out / size[0]) for v in (rows.start, rows.stop))
            c0, c1 = (round(v * out / size[1]) for v in (cols.start, cols.stop))
            inside = image[r0 + margin : r1 - margin, c0 + margin : c1 - margin].reshape(-1, 3)
            assert inside.size > 0
            np.testing.assert_allclose(inside.mean(axis=0), RED, atol=40)


def test_robotwin_instructions_pair_by_file_name(tmp_path):
    root = tmp_path / "in"
    make_episodes(root, "robotwin", episodes=5, steps=4)
    # A deleted episode and a renamed one: list position no longer matches the file index.
    (root / "data" / "episode1.hdf5").unlink()
    (root / "data" / "episode4.hdf5").rename(root / "data" / "episode10.hdf5")
    (root / "instructions" / "episode4.json").rename(root / "instructions" / "episode10.json")
    summary = run_convert(root, tmp_path / "out", val_episodes=0)
    assert [e.key for e in summary.manifest.episodes] == [
        "data-episode0",
        "data-episode10",
        "data-episode2",
        "data-episode3",
    ]
    generated_index = {"data-episode0": 0, "data-episode10": 4, "data-episode2": 2}
    generated_index["data-episode3"] = 3
    samples = read_split(tmp_path / "out", "train")
    assert len(samples) == 16
    for sample in samples:
        index = generated_index[sample["meta"]["episode"]]
        assert sample["meta"]["instructions"] == instructions(index)["seen"]
        assert sample["meta"]["unseen"] == instructions(index)["unseen"]


def test_aloha_proprio_in_meta_and_stats(tmp_path):
    paths = make_episodes(tmp_path / "in", "aloha", episodes=3, steps=10, aloha_jpeg=True)
    summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0, instruction="fold it")
    assert summary.manifest.layout == "aloha" and summary.manifest.proprio_dim == 14
    by_key = {p.stem: p for p in paths}
    samples = read_split(tmp_path / "out", "train")
    assert len(samples) == 30
    for sample in samples:
        meta = sample["meta"]
        qpos = source_proprio(by_key[meta["episode"]])
        np.testing.assert_array_equal(np.asarray(meta["proprio"], np.float32), qpos[meta["t"]])
        assert meta["instructions"] == ["fold it"] and meta["unseen"] == []
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())["in"]
    qpos = np.concatenate([source_proprio(p) for p in paths]).astype(np.float64)
    assert stats["proprio"]["mean"] == qpos.mean(axis=0).tolist()
    assert stats["proprio"]["max"] == qpos.max(axis=0).tolist()


def test_aloha_needs_an_instruction(tmp_path):
    make_episodes(tmp_path / "in", "aloha", episodes=2, steps=4)
    with pytest.raises(ConfigError, match="--instruction"):
        run_convert(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _rewrite(path, name, data):
    with h5py.File(path, "r+") as f:
        del f[name]
        if data is not None:
            f[name] = data


def test_bad_episodes_are_skipped_with_a_reason(tmp_path):
    root = tmp_path / "in"
    paths = make_episodes(root, episodes=10, steps=12)
    actions = source_actions(paths[3])
    actions[3, 5] = np.nan
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])
    paths[1].write_text("this is not an HDF5 file\n")
    _rewrite(paths[2], "action", None)
    _rewrite(paths[3], "action", actions)
    _rewrite(paths[4], "action", source_actions(paths[4])[:10])
    _rewrite(paths[5], "head_camera_image", read_dataset(paths[5], "head_camera_image") / 255.0)
    _rewrite(paths[6], "low_cam_image", None)
    _rewrite(paths[9], "action", source_actions(paths[9])[:, :12])
    expected = {
        "episode_0.hdf5": "not a readable HDF5 file",
        "episode_1.hdf5": "not a readable HDF5 file",
        "episode_2.hdf5": "no action dataset 'action'",
        "episode_3.hdf5": "action has non-finite values (NaN or inf), first at row 3",
        "episode_4.hdf5": "action has 10 rows but head has 12 frames",
        "episode_5.hdf5": "head frames are float64 but must be uint8",
        "episode_6.hdf5": "no camera 'low' (has head, left_wrist, right_wrist)",
        "episode_9.hdf5": "action has 12 dims but episode_7.hdf5 has 14",
    }

    summary = run_convert(root, tmp_path / "out", cameras=("head", "low"), val_episodes=0)

    assert len(summary.skipped) == 8
    assert dict(summary.skipped).keys() == expected.keys()
    manifest = json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())
    entries = {e["path"]: e for e in manifest["episodes"]}
    for path, reason in expected.items():
        entry = entries[path]
        assert entry["status"] == "skipped" and entry["split"] is None and entry["key"] == ""
        assert reason in entry["reason"] and "\n" not in entry["reason"]
        assert dict(summary.skipped)[path] == entry["reason"]
    assert [p for p, e in entries.items() if e["status"] == "ok"] == [
        "episode_7.hdf5",
        "episode_8.hdf5",
    ]
    samples = read_split(tmp_path / "out", "train")
    assert sorted({s["meta"]["episode"] for s in samples}) == ["episode_7", "episode_8"]
    assert len(samples) == 24


def test_no_usable_episode_is_an_error(tmp_path):
    paths = make_episodes(tmp_path / "in", episodes=2, steps=4)
    for path in paths:
        _rewrite(path, "action", np.full((4, 14), np.inf))
    with pytest.raises(ConvertError, match=r"none of 2 episodes is usable \(e\.g\. episode_0"):
        run_convert(tmp_path / "in", tmp_path / "out", layout="processed")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == []


def test_keys_are_safe_and_a_colliding_key_is_skipped(tmp_path):
    root = tmp_path / "in"
    [path] = make_episodes(root / "task1", episodes=1, steps=3)
    (root / "run.2").mkdir()
    shutil.copy(path, root / "task1-episode_0.hdf5")
    shutil.copy(path, root / "run.2" / "episode 0.hdf5")
    summary = run_convert(root, tmp_path / "out", val_episodes=0)
    entries = {e.path: e for e in summary.manifest.episodes}
    assert entries["run.2/episode 0.hdf5"].key == "run-2-episode-0"
    assert entries["task1-episode_0.hdf5"].key == "task1-episode_0"
    skipped = entries["task1/episode_0.hdf5"]
    assert skipped.status == "skipped"
    assert skipped.reason == (
        "its sample key 'task1-episode_0' collides with task1-episode_0.hdf5; rename one file"
    )
    keys = sorted(s["key"] for s in read_split(tmp_path / "out", "train"))
    assert keys == [
        f"{e}_{t:06d}" for e in ("run-2-episode-0", "task1-episode_0") for t in range(3)
    ]


def _corrupt_robotwin_frame(root, index, t):
    """A middle frame that is not a JPEG: only encoding finds it (the probe checks first/last)."""
    with h5py.File(root / "data" / f"episode{index}.hdf5", "r+") as f:
        f["observation/head_camera/rgb"][t] = b"not a jpeg"


def test_episode_failing_while_encoding_is_skipped(tmp_path):
    root = tmp_path / "in"
    make_episodes(root, "robotwin", episodes=4, steps=6)
    _corrupt_robotwin_frame(root, 1, 3)
    summary = run_convert(root, tmp_path / "out", val_episodes=1)
    [(path, reason)] = summary.skipped
    assert path == "data/episode1.hdf5"
    assert reason.startswith("camera 'head' frame 3 is not a valid JPEG")
    entry = next(e for e in summary.manifest.episodes if e.path == path)
    assert entry.status == "skipped" and entry.reason == reason and entry.split is None
    train = {s["meta"]["episode"] for s in read_split(tmp_path / "out", "train")}
    val = {s["meta"]["episode"] for s in read_split(tmp_path / "out", "val")}
    assert len(train) == 2 and len(val) == 1
    assert train | val == {"data-episode0", "data-episode2", "data-episode3"}
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())["in"]
    assert stats["num_trajectories"] == 2 and stats["num_transitions"] == 12


@pytest.mark.parametrize("found_while", ["checking", "encoding"])
def test_strict_stops_on_a_bad_episode_and_writes_nothing(tmp_path, found_while):
    root = tmp_path / "in"
    paths = make_episodes(root, "robotwin", episodes=3, steps=6)
    if found_while == "checking":
        paths[1].write_bytes(b"garbage")
    else:
        _corrupt_robotwin_frame(root, 1, 3)
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match=r"(?s)--strict: 1 bad episode.*data/episode1\.hdf5: "):
        run_convert(root, out, strict=True, val_episodes=0)
    assert not out.exists()
    assert leftovers(out) == []


def test_empty_input_folder_is_an_error(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(LayoutError, match="No \\*.hdf5 episodes found"):
        run_convert(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_layout_is_an_error(tmp_path):
    make_episodes(tmp_path / "in", episodes=1, steps=2)
    with pytest.raises(ConfigError, match="--layout: unknown layout 'rlds'"):
        run_convert(tmp_path / "in", tmp_path / "out", layout="rlds")


@pytest.fixture
def episodes_dir(tmp_path):
    make_episodes(tmp_path / "in", episodes=4, steps=12)
    return tmp_path / "in"


def test_existing_set_is_kept_without_overwrite(tmp_path, episodes_dir):
    out = tmp_path / "out"
    run_convert(episodes_dir, out, val_episodes=0)
    before = file_hashes(out)
    with pytest.raises(OutputError, match="already holds a shard set; pass --overwrite"):
        run_convert(episodes_dir, out, val_episodes=0, chunk=4)
    assert file_hashes(out) == before
    assert leftovers(out) == []


@pytest.mark.parametrize(
    "files",
    [
        {"notes.txt": "mine", "sub/data.bin": "precious"},
        {MANIFEST_FILE: json.dumps({"format": "someone-else"}), "a.tar": "x"},
    ],
    ids=["plain-files", "foreign-manifest"],
)
def test_overwrite_never_touches_a_folder_that_is_not_a_shard_set(tmp_path, episodes_dir, files):
    out = tmp_path / "out"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = file_hashes(out)
    with pytest.raises(OutputError, match="holds no shard set; refusing"):
        run_convert(episodes_dir, out, overwrite=True)
    assert file_hashes(out) == before


def test_overwrite_replaces_a_shard_set(tmp_path, episodes_dir):
    out = tmp_path / "out"
    run_convert(episodes_dir, out, val_episodes=0, shard_samples=10)
    assert (out / "train-000004.tar").exists()
    summary = run_convert(episodes_dir, out, val_episodes=1, shard_samples=100, overwrite=True)
    assert sorted(file_hashes(out)) == [
        MANIFEST_FILE,
        "stats.json",
        "train-000000.tar",
        "val-000000.tar",
    ]
    assert read_manifest(out).options["shard_samples"] == 100
    assert summary.manifest.samples("train") == 36 and summary.manifest.samples("val") == 12
    assert leftovers(out) == []


def test_an_empty_target_folder_is_used(tmp_path, episodes_dir):
    (tmp_path / "out").mkdir()
    summary = run_convert(episodes_dir, tmp_path / "out", val_episodes=0)
    assert summary.manifest.samples("train") == 48
    assert (tmp_path / "out" / MANIFEST_FILE).is_file()


@pytest.mark.parametrize("stage", ["write_shards", "write_set_stats", "record_manifest", "publish"])
def test_interruption_leaves_the_target_untouched(tmp_path, episodes_dir, monkeypatch, stage):
    out = tmp_path / "out"
    run_convert(episodes_dir, out, val_episodes=0)
    before = file_hashes(out)
    reached = []

    def interrupt(*args, **kwargs):
        reached.append(stage)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.convert.stages, stage, interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_convert(episodes_dir, out, val_episodes=1, overwrite=True)
    assert reached == [stage]
    assert file_hashes(out) == before
    assert leftovers(out) == []


def test_interruption_of_a_first_conversion_leaves_nothing(tmp_path, episodes_dir, monkeypatch):
    monkeypatch.setattr(pipeline.convert.stages, "publish", _raise_keyboard_interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_convert(episodes_dir, out)
    assert not out.exists()
    assert leftovers(out) == []


def _raise_keyboard_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_output_does_not_depend_on_workers(tmp_path):
    make_episodes(tmp_path / "in", episodes=5, steps=12)
    options = {"val_episodes": 1, "shard_samples": 16}
    run_convert(tmp_path / "in", tmp_path / "one", workers=1, **options)
    run_convert(tmp_path / "in", tmp_path / "two", workers=2, **options)
    one, two = file_hashes(tmp_path / "one"), file_hashes(tmp_path / "two")
    assert len(one) == 6  # 3 train shards, 1 val shard, stats.json, manifest.json
    assert one == two


def test_seed_changes_the_order_but_not_the_samples(tmp_path, episodes_dir):
    run_convert(episodes_dir, tmp_path / "a", val_episodes=0, seed=0)
    run_convert(episodes_dir, tmp_path / "b", val_episodes=0, seed=1)
    a = [s["key"] for s in read_split(tmp_path / "a", "train")]
    b = [s["key"] for s in read_split(tmp_path / "b", "train")]
    assert a != b and sorted(a) == sorted(b)


@pytest.mark.parametrize(("val_episodes", "n_val"), [(2, 2), (0.5, 3), (0, 0)])
def test_val_episodes_as_count_or_fraction(tmp_path, val_episodes, n_val):
    make_episodes(tmp_path / "in", episodes=6, steps=4)
    summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=val_episodes)
    manifest = read_manifest(tmp_path / "out")
    assert manifest.episode_count("val") == n_val
    assert manifest.episode_count("train") == 6 - n_val
    assert summary.manifest.samples("val") == 4 * n_val
    assert ("val" in manifest.splits) == (n_val > 0)
    assert (tmp_path / "out" / "val-000000.tar").exists() == (n_val > 0)


@pytest.mark.parametrize(("episodes", "n_val"), [(20, 1), (10, 0)])
def test_default_val_fraction(tmp_path, episodes, n_val):
    make_episodes(tmp_path, episodes=episodes, steps=2, image_size=(16, 16), cameras=("head",))
    plan = plan_episodes(PlanConfig(tmp_path, workers=1, progress=False))
    assert len(plan.good("val")) == n_val
    assert len(plan.good("train")) == episodes - n_val


@pytest.mark.parametrize("val_episodes", [3, 5])
def test_val_episodes_leaving_no_train_is_an_error(tmp_path, val_episodes):
    make_episodes(tmp_path / "in", episodes=3, steps=2)
    with pytest.raises(ConfigError, match="leaves no training episodes out of 3"):
        run_convert(tmp_path / "in", tmp_path / "out", val_episodes=val_episodes)
    assert not (tmp_path / "out").exists()


def test_stats_cover_the_train_episodes_only(nested):
    episodes, shards, summary = nested
    stats = json.loads((shards / "stats.json").read_text())["demo"]
    train = train_paths(episodes, shards)
    assert len(train) == 4
    rows = np.concatenate([source_actions(p) for p in train])
    assert stats["num_trajectories"] == 4 and stats["num_transitions"] == len(rows)
    assert stats["action"]["min"] == rows.astype(np.float64).min(axis=0).tolist()


def test_webdataset_reads_every_sample(nested):
    _, shards, summary = nested
    shard_list = summary.manifest.shards("train") + summary.manifest.shards("val")
    urls = [str(shards / s.name) for s in shard_list]
    expected = {s["key"]: s for s in all_samples(shards)}
    got = list(webdataset.WebDataset(urls, shardshuffle=False))
    assert sorted(s["__key__"] for s in got) == sorted(expected)
    for sample in got:
        assert {k for k in sample if not k.startswith("__")} == {
            "head.jpg",
            "low.jpg",
            "actions.npy",
            "meta.json",
        }
        mine = expected[sample["__key__"]]
        np.testing.assert_array_equal(np.load(io.BytesIO(sample["actions.npy"])), mine["actions"])
        assert json.loads(sample["meta.json"]) == mine["meta"]


def test_hf_datasets_reads_every_sample(nested, tmp_path):
    datasets = pytest.importorskip("datasets")
    _, shards, summary = nested
    tars = [str(shards / s.name) for s in summary.manifest.shards("train")]
    data = datasets.load_dataset(
        "webdataset", data_files={"train": tars}, split="train", cache_dir=str(tmp_path / "hf")
    )
    expected = {s["key"]: s for s in read_split(shards, "train")}
    assert len(data) == len(expected)
    assert sorted(data["__key__"]) == sorted(expected)
    row = data[0]
    mine = expected[row["__key__"]]
    assert np.asarray(row["head.jpg"]).shape == (32, 32, 3)
    np.testing.assert_array_equal(np.asarray(row["actions.npy"], np.float32), mine["actions"])
    assert row["meta.json"]["t"] == mine["meta"]["t"]
