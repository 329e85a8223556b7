"""Tests for stats.json (exact values over the train timesteps), its checks and normalization."""

import json
import shutil

import numpy as np
import pytest
import torch
from episode_fixtures import (
    make_episodes,
    read_stats_json,
    run_convert,
    source_actions,
    source_proprio,
    train_paths,
)

from pipeline.tools.verify import verify_stats
from stats.compute import STAT_KEYS, array_stats, dataset_stats
from stats.io import StatsError, parse_stats, read_stats, stats_to_json
from stats.normalize import Bounds, bounds, denormalize, normalize

NO_NORMALIZE = (6, 13)  # the grippers


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    make_episodes(root / "episodes", episodes=6, steps=15)
    run_convert(
        root / "episodes",
        root / "shards",
        val_episodes=2,
        no_normalize_dims=NO_NORMALIZE,
        name="demo",
        cameras=("head",),
    )
    return root / "episodes", root / "shards"


def expected_stats(rows: np.ndarray) -> dict[str, list]:
    x = rows.astype(np.float64)
    q01, q99 = np.quantile(x, [0.01, 0.99], axis=0, method="linear")
    return {
        "mean": x.mean(axis=0).tolist(),
        "std": x.std(axis=0).tolist(),
        "min": x.min(axis=0).tolist(),
        "max": x.max(axis=0).tolist(),
        "q01": q01.tolist(),
        "q99": q99.tolist(),
    }


def test_stats_json_layout(shard_set):
    _, shards = shard_set
    data = read_stats_json(shards)
    assert list(data) == ["demo"]
    entry = data["demo"]
    assert set(entry) == {"action", "num_transitions", "num_trajectories"}
    assert set(entry["action"]) == set(STAT_KEYS)
    assert all(len(values) == 14 for values in entry["action"].values())
    assert entry["num_trajectories"] == 4 and entry["num_transitions"] == 60


def test_stats_equal_numpy_over_every_train_timestep(shard_set):
    episodes, shards = shard_set
    paths = train_paths(episodes, shards)
    assert len(paths) == 4
    rows = np.concatenate([source_actions(p) for p in paths])
    action = read_stats_json(shards)["demo"]["action"]
    for key, values in expected_stats(rows).items():
        assert action[key] == values, key  # exact: same float64 maths, JSON round-trips floats
    # Statistics over all episodes (val included) would differ: the split is respected.
    everything = np.concatenate([source_actions(p) for p in sorted(episodes.glob("*.hdf5"))])
    assert action["max"] != expected_stats(everything)["max"]


def test_no_normalize_dims_clear_the_mask(shard_set):
    _, shards = shard_set
    mask = read_stats_json(shards)["demo"]["action"]["mask"]
    assert mask == [d not in NO_NORMALIZE for d in range(14)]


def test_verify_passes_on_a_fresh_set(shard_set):
    assert verify_stats(shard_set[1]) == []


def _tamper(shards, where, change):
    """Replace the stats.json value at `where` (a path of keys) by `change(old value)`."""
    path = shards / "stats.json"
    data = json.loads(path.read_text())
    parent = data["demo"]
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = change(parent[where[-1]])
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("where", "change", "field"),
    [
        (("action", "q99", 2), lambda v: v + 1e-4, "action.q99"),
        (("action", "mean", 0), lambda v: v * 1.01, "action.mean"),
        (("num_transitions",), lambda v: v + 1, "counts.num_transitions"),
        (("action", "mask", 0), lambda v: not v, "action.mask"),
    ],
)
def test_verify_names_a_tampered_field(shard_set, tmp_path, where, change, field):
    copy = tmp_path / "shards"
    shutil.copytree(shard_set[1], copy)
    _tamper(copy, where, change)
    problems = verify_stats(copy)
    assert [f"{p.quantity}.{p.key}" for p in problems] == [field]


def test_aloha_proprio_stats_and_verify(tmp_path):
    paths = make_episodes(tmp_path / "in", "aloha", episodes=3, steps=10)
    run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0, instruction="fold")
    entry = read_stats_json(tmp_path / "out")["in"]
    proprio = np.concatenate([source_proprio(p) for p in paths])
    assert set(entry["proprio"]) == set(STAT_KEYS)
    for key, values in expected_stats(proprio).items():
        assert entry["proprio"][key] == values, key
    assert entry["proprio"]["mask"] == [True] * 14
    assert verify_stats(tmp_path / "out") == []


def test_array_stats_small_example():
    rows = np.array([[0.0, 10.0], [1.0, 10.0], [2.0, 10.0], [3.0, 10.0]], np.float32)
    stats = array_stats(rows, no_normalize=[1])
    np.testing.assert_array_equal(stats.mean, [1.5, 10.0])
    np.testing.assert_array_equal(stats.min, [0.0, 10.0])
    np.testing.assert_array_equal(stats.max, [3.0, 10.0])
    np.testing.assert_allclose(stats.q01, [0.03, 10.0])  # linear: 0.01 * (n - 1) = 0.03
    np.testing.assert_allclose(stats.q99, [2.97, 10.0])
    np.testing.assert_allclose(stats.std, [np.sqrt(1.25), 0.0])
    np.testing.assert_array_equal(stats.mask, [True, False])


def test_array_stats_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        array_stats(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="dimension 3 is out of range for 3-dim"):
        array_stats(np.zeros((2, 3)), no_normalize=[3])


def test_dataset_stats_pools_timesteps_not_episode_quantiles():
    episodes = [np.arange(10, dtype=np.float32)[:, None], np.full((90, 1), 100, np.float32)]
    stats = dataset_stats(episodes)
    pooled = np.concatenate(episodes).astype(np.float64)
    assert stats.num_transitions == 100 and stats.num_trajectories == 2
    np.testing.assert_array_equal(stats.action.q01, np.quantile(pooled, 0.01, axis=0))
    assert stats.action.q01[0] == pytest.approx(0.99)  # not the mean of per-episode quantiles
    assert stats.proprio is None


def test_stats_json_round_trip():
    rng = np.random.default_rng(0)
    stats = dataset_stats([rng.normal(size=(7, 3))], [rng.normal(size=(7, 2))], no_normalize=[1])
    parsed = parse_stats(stats_to_json("x", stats), "mem")["x"]
    for quantity in ("action", "proprio"):
        for key in STAT_KEYS:
            want = getattr(getattr(stats, quantity), key)
            np.testing.assert_array_equal(getattr(getattr(parsed, quantity), key), want)
    assert (parsed.num_transitions, parsed.num_trajectories) == (7, 1)


def test_bad_stats_files_raise_stats_error(tmp_path):
    with pytest.raises(StatsError, match="mem: not a valid stats file"):
        parse_stats('{"x": {"action": {}}}', "mem")
    with pytest.raises(StatsError, match="missing"):
        read_stats(tmp_path / "stats.json")


def _tampered(change) -> str:
    """A valid stats text for dataset "x" (3 action dims, 2 proprio dims), then `change`d."""
    rng = np.random.default_rng(0)
    stats = dataset_stats([rng.normal(size=(9, 3))], [rng.normal(size=(9, 2))])
    data = json.loads(stats_to_json("x", stats))
    change(data["x"])
    return json.dumps(data)  # NaN and Infinity as Python's json writes them


def _set(quantity, key, dim, value):
    def change(entry):
        entry[quantity][key][dim] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("action", "mean", 1, float("nan")), "action.mean[1] is nan"),
        (_set("action", "q99", 2, float("inf")), "action.q99[2] is inf"),
        (_set("proprio", "std", 0, float("-inf")), "proprio.std[0] is -inf"),
        (_set("action", "q01", 0, 1e9), "action.q01[0] = 1e+09 is above action.q99[0]"),
        (_set("proprio", "min", 1, 1e9), "proprio.min[1] = 1e+09 is above proprio.max[1]"),
        (lambda e: e["action"]["std"].pop(), "action.std has 2 dims but action.mean has 3"),
        (lambda e: e["action"]["mask"].pop(), "action.mask has 2 dims but action.mean has 3"),
        (lambda e: e["proprio"].update(q01=[[0.0, 1.0]]), "proprio.q01 is not a list"),
    ],
)
def test_unusable_statistics_are_refused_naming_field_and_dimension(change, message):
    with pytest.raises(StatsError) as caught:
        parse_stats(_tampered(change), "set/stats.json")
    assert str(caught.value).startswith(f"set/stats.json: dataset 'x': {message}")
    assert "\n" not in str(caught.value)


# Normalization -----------------------------------------------------------------------------


@pytest.fixture
def norm_stats():
    rng = np.random.default_rng(1)
    rows = rng.uniform(-2, 3, size=(500, 5)).astype(np.float32)
    rows[:, 3] = 0.25  # a constant dimension: low == high
    return rows, array_stats(rows, no_normalize=[4])


@pytest.mark.parametrize("normalization", ["bounds_q99", "bounds"])
def test_normalize_round_trip_within_bounds(norm_stats, normalization):
    rows, stats = norm_stats
    b = bounds(stats, normalization)
    inside = np.clip(rows, b.low, b.high)
    y = normalize(inside, b)
    assert y[:, :3].min() >= -1 and y[:, :3].max() <= 1
    assert y[:, :3].min() < -0.99 and y[:, :3].max() > 0.99  # bounds map onto the ends
    back = denormalize(y, b)
    np.testing.assert_allclose(back[:, :3], inside[:, :3], atol=1e-5)
    np.testing.assert_allclose(back[:, 3], 0.25, atol=1e-6)


def test_normalize_clips_to_unit_range(norm_stats):
    _, stats = norm_stats
    b = bounds(stats, "bounds")
    x = np.stack([b.high + 5, b.low - 5]).astype(np.float32)
    y = normalize(x, b)
    np.testing.assert_array_equal(y[0, :3], 1.0)
    np.testing.assert_array_equal(y[1, :3], -1.0)


def test_mask_false_dims_pass_through(norm_stats):
    rows, stats = norm_stats
    b = bounds(stats, "bounds_q99")
    x = rows * 3  # far outside the bounds: a masked dim would be clipped
    np.testing.assert_array_equal(normalize(x, b)[:, 4], x[:, 4])
    np.testing.assert_array_equal(denormalize(x, b)[:, 4], x[:, 4])


def test_constant_dims_normalize_to_zero(norm_stats):
    rows, stats = norm_stats
    b = bounds(stats, "bounds_q99")
    np.testing.assert_array_equal(b.constant, [False, False, False, True, False])
    np.testing.assert_array_equal(normalize(rows, b)[:, 3], 0.0)
    np.testing.assert_array_equal(normalize(rows + 1, b)[:, 3], 0.0)


def _oft_normalize(x, meta, normalization):
    """OFT's normalize_action_and_proprio (prismatic/vla/datasets/rlds/utils/data_utils.py),
    the tf.where formulas written in numpy."""
    low, high = (
        (meta["q01"], meta["q99"]) if normalization == "bounds_q99" else (meta["min"], meta["max"])
    )
    y = np.where(meta["mask"], np.clip(2 * (x - low) / (high - low + 1e-8) - 1, -1, 1), x)
    return np.where(meta["min"] == meta["max"], 0.0, y)


@pytest.mark.parametrize("normalization", ["bounds_q99", "bounds"])
def test_normalize_matches_ofts_formula_on_its_edge_cases(normalization):
    rows = np.zeros((200, 5), dtype=np.float32)
    rows[:, 0] = np.linspace(-1, 2, 200)  # an ordinary dimension
    rows[:1, 1] = 1.0  # q01 == q99 == 0 < max: a rarely moving dimension
    rows[:, 2] = 0.5  # constant, normalized
    rows[:, 3] = 0.7  # constant, mask off: the one deliberate difference
    rows[:, 4] = np.linspace(5, 9, 200)  # mask off
    stats = array_stats(rows, no_normalize=[3, 4])
    meta = {k: np.asarray(v) for k, v in stats.to_dict().items()}
    assert meta["q01"][1] == meta["q99"][1] == 0 < meta["max"][1]
    x = np.array([[0.3, 0.0, 0.5, 0.7, 6.0], [2.5, 1.0, 0.5, 0.7, 10.0], [-3, -1, 9, 9, 0]])
    x = x.astype(np.float32)
    ours = normalize(x, bounds(stats, normalization))
    oft = _oft_normalize(x, meta, normalization)
    same = [0, 1, 2, 4]
    np.testing.assert_allclose(ours[:, same], oft[:, same], atol=1e-6)
    if normalization == "bounds_q99":
        np.testing.assert_array_equal(ours[:, 1], [-1, 1, -1])  # OFT's +-1, not 0
    # OFT zeroes it and then passes the 0 to the robot unnormalized; we keep the value.
    np.testing.assert_array_equal(oft[:, 3], 0.0)
    np.testing.assert_array_equal(ours[:, 3], x[:, 3])


def test_normalize_works_on_torch_tensors(norm_stats):
    rows, stats = norm_stats
    b = bounds(stats, "bounds_q99")
    # Bounds of tensors, as the trainer builds them on the device.
    on_device = Bounds(**{name: torch.from_numpy(v) for name, v in vars(b).items()})
    x = torch.from_numpy(rows * 1.5)
    y = normalize(x, on_device)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), normalize(rows * 1.5, b), atol=1e-6)
    back = denormalize(y, on_device)
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), denormalize(y.numpy(), b), atol=1e-6)


def test_unknown_normalization_is_rejected(norm_stats):
    with pytest.raises(ValueError, match="unknown normalization 'zscore'"):
        bounds(norm_stats[1], "zscore")
