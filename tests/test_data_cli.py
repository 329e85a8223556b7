"""CliRunner tests of `vla-data` convert, stats and generate: output, files, one-line errors."""

import json
import shutil

import pytest
from click.testing import CliRunner
from episode_fixtures import make_episodes, run_convert, source_actions

from pipeline.cli import main
from shards.manifest import read_manifest

STATS_OPTIONS = ["--val-episodes", "2", "--no-normalize-dims", "6,13", "--name", "demo"]


def invoke(*args, env=None):
    # A wide terminal so rich prints whole numbers in the stats table.
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})})


def assert_user_error(result, *fragments):
    """Non-zero exit through click (no traceback) with a one-line message naming the problem."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    make_episodes(root / "episodes", episodes=6, steps=10)
    options = {"val_episodes": 2, "no_normalize_dims": (6, 13), "name": "demo"}
    run_convert(root / "episodes", root / "shards", **options)
    return root / "episodes", root / "shards"


def test_generate(tmp_path):
    result = invoke(
        "generate", tmp_path / "eps", "--layout", "robotwin", "--episodes", 2, "--steps", 3
    )
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote 2 robotwin episodes to {tmp_path / 'eps'}\n"
    assert sorted(p.name for p in (tmp_path / "eps" / "data").iterdir()) == [
        "episode0.hdf5",
        "episode1.hdf5",
    ]
    assert (tmp_path / "eps" / "instructions" / "episode1.json").is_file()


def test_generate_bad_option(tmp_path):
    result = invoke("generate", tmp_path / "eps", "--episodes", 0)
    assert_user_error(result, "Episodes and steps must both be at least 1")
    assert not (tmp_path / "eps").exists()


def test_convert(tmp_path):
    make_episodes(tmp_path / "eps", episodes=5, steps=10)
    (tmp_path / "eps" / "episode_4.hdf5").write_bytes(b"not hdf5")
    result = invoke(
        "convert", tmp_path / "eps", tmp_path / "out", "--quiet", "--workers", 1,
        "--image-size", 32, "--val-episodes", 1, "--chunk", 4, "--shard-samples", 20,
        "--cameras", "head,low", "--name", "demo",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"wrote 40 samples in 3 shards to {tmp_path / 'out'}: train 3 episodes / 30 samples, "
        "val 1 / 10; cameras head,low; skipped 1 episode(s)\n"
    )
    assert result.stderr.startswith("skipped episode_4.hdf5: not a readable HDF5 file")
    manifest = read_manifest(tmp_path / "out")
    assert manifest.dataset == "demo" and manifest.chunk == 4 and manifest.image_size == 32
    assert manifest.cameras == ["head", "low"]
    assert [s.samples for s in manifest.shards("train")] == [20, 10]


@pytest.mark.parametrize(
    ("case", "args", "fragments"),
    [
        ("missing", ["{tmp}/nowhere", "{tmp}/out"], ["nowhere does not exist"]),
        ("empty", ["{tmp}/empty", "{tmp}/out"], ["No *.hdf5 episodes found"]),
        ("val", ["{tmp}/eps", "{tmp}/out", "--val-episodes", "abc"], ["--val-episodes", "'abc'"]),
        ("too-many-val", ["{tmp}/eps", "{tmp}/out", "--val-episodes", "3"], ["no training"]),
        ("camera", ["{tmp}/eps", "{tmp}/out", "--cameras", "top:A.b"], ["--cameras", "A.b"]),
        ("no-camera", ["{tmp}/eps", "{tmp}/out", "--cameras", "top"], ["no camera 'top'"]),
        ("target", ["{tmp}/eps", "{tmp}/notes", "--overwrite"], ["holds no shard set"]),
        ("aloha", ["{tmp}/eps", "{tmp}/out", "--layout", "aloha"], ["--instruction"]),
    ],
)
def test_convert_user_errors(tmp_path, case, args, fragments):
    make_episodes(tmp_path / "eps", episodes=3, steps=4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    args = [a.format(tmp=tmp_path) for a in args]
    result = invoke("convert", *args, "--quiet", "--workers", 1)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_convert_strict_lists_the_bad_episode(tmp_path):
    make_episodes(tmp_path / "eps", episodes=3, steps=4)
    (tmp_path / "eps" / "episode_1.hdf5").write_text("broken")
    result = invoke(
        "convert", tmp_path / "eps", tmp_path / "out", "--quiet", "--strict", "--workers", 1
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "Error: --strict: 1 bad episode(s), nothing written" in result.output
    assert "episode_1.hdf5: not a readable HDF5 file" in result.output
    assert not (tmp_path / "out").exists()


def test_stats_table(shard_set):
    episodes, shards = shard_set
    result = invoke("stats", shards)
    assert result.exit_code == 0, result.output
    assert "demo: action" in result.output and "demo: proprio" not in result.output
    assert "40 transitions from 4 train trajectories" in result.output
    stats = json.loads((shards / "stats.json").read_text())["demo"]["action"]
    rows = {line.split()[1]: line for line in result.output.splitlines() if line[:1] == "│"}
    assert f"{stats['mean'][0]:.4f}" in rows["0"] and f"{stats['q99'][0]:.4f}" in rows["0"]
    assert rows["0"].rstrip(" │").endswith("yes") and rows["6"].rstrip(" │").endswith("no")


def test_stats_of_a_shard_set_refuses_options_that_shape_a_conversion(shard_set):
    _, shards = shard_set
    result = invoke("stats", shards, "--layout", "aloha", "--seed", 3)
    assert result.exit_code == 1
    assert "--layout, --seed apply only to an episodes folder" in result.output
    assert "Traceback" not in result.output


def test_stats_json_and_output_file(shard_set, tmp_path):
    _, shards = shard_set
    text = (shards / "stats.json").read_text()
    result = invoke("stats", shards, "--json", "-o", tmp_path / "copy.json")
    assert result.exit_code == 0, result.output
    assert result.output == text
    assert (tmp_path / "copy.json").read_text() == text


def test_stats_from_episodes_equal_the_shard_sets(shard_set, tmp_path):
    episodes, shards = shard_set
    result = invoke("stats", episodes, *STATS_OPTIONS, "--workers", 1, "-o", tmp_path / "x.json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.json").read_text() == (shards / "stats.json").read_text()
    # Other options, other numbers: the equality above is not an accident.
    other = invoke("stats", episodes, "--val-episodes", "0", "--json", "--workers", 1)
    entry = json.loads(other.output)["episodes"]
    assert entry["num_trajectories"] == 6
    assert entry["action"]["mask"] == [True] * 14
    maximum = max(source_actions(p)[:, 0].max() for p in sorted(episodes.glob("*.hdf5")))
    assert entry["action"]["max"][0] == float(maximum)


def test_stats_verify(shard_set, tmp_path):
    _, shards = shard_set
    result = invoke("stats", shards, "--verify")
    assert result.exit_code == 0, result.output
    assert result.output == f"{shards / 'stats.json'}: matches the train samples\n"

    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    data = json.loads((copy / "stats.json").read_text())
    data["demo"]["action"]["max"][3] += 0.5
    (copy / "stats.json").write_text(json.dumps(data))
    result = invoke("stats", copy, "--verify")
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stderr.startswith("mismatch action.max: dim 3:")
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {copy}: stats.json disagrees with the train samples"
    )


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["{eps}", "--verify"], ["--verify needs a shard set"]),
        (["{tmp}/nowhere"], ["nowhere does not exist"]),
        (["{eps}", "--layout", "aloha", "--workers", "1"], ["--instruction"]),
    ],
)
def test_stats_user_errors(shard_set, tmp_path, args, fragments):
    episodes, _ = shard_set
    result = invoke("stats", *[a.format(eps=episodes, tmp=tmp_path) for a in args])
    assert_user_error(result, *fragments)


def test_stats_of_a_broken_stats_file_is_a_user_error(shard_set, tmp_path):
    copy = tmp_path / "shards"
    shutil.copytree(shard_set[1], copy)
    (copy / "stats.json").write_text("{not json")
    assert_user_error(invoke("stats", copy), "stats.json: not a valid stats file")


def test_workers_auto_is_one_process_per_core_this_process_may_use(tmp_path):
    from pipeline.config import PlanConfig
    from shards.loader_plan import available_cores

    assert PlanConfig(tmp_path).workers == available_cores()[0]
    assert PlanConfig(tmp_path, workers="3").workers == 3
