"""The streaming reader: epoch order, rank/worker splits, bad shards, instructions, resume."""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import logging
import os
import subprocess
import sys
import tarfile
import threading
from collections import Counter
from pathlib import Path

import pytest
import torch
from shard_fixtures import TOY_INSTRUCTIONS, break_jpegs, no_sample_decodes, write_toy_shards

from shards.mixture import open_mixture
from shards.reader import StreamConfig, StreamState, make_loader
from shards.source import ShardSetError, open_shard_set
from shards.stream import choose_instruction, stream_shards
from stats.io import StatsError

NAMES = [f"train-{i:06d}.tar" for i in range(12)]


def test_shard_order_reshuffles_every_epoch():
    orders = [tuple(stream_shards(NAMES, seed=3, epoch=e, stream=0, streams=1)) for e in range(4)]
    assert len(set(orders)) == 4
    assert all(sorted(unit.name for unit in o) == NAMES for o in orders)
    assert all(unit.parts == 1 for o in orders for unit in o)
    assert stream_shards(NAMES, 3, 1, 0, 1) == stream_shards(NAMES, 3, 1, 0, 1)


@pytest.mark.parametrize("streams", [1, 2, 5, 12])
def test_streams_are_disjoint_and_cover_every_shard(streams):
    for epoch in range(3):
        parts = [stream_shards(NAMES, 0, epoch, s, streams) for s in range(streams)]
        flat = [unit.name for part in parts for unit in part]
        assert sorted(flat) == NAMES


def test_fewer_shards_than_streams_split_them_instead_of_starving_or_repeating():
    units = [stream_shards(NAMES[:3], 0, 0, s, 8) for s in range(8)]
    assert all(units)  # every stream gets something to read
    flat = list(itertools.chain(*units))
    assert len(flat) == len(set(flat)) == 9  # 3 shards x 3 parts, each read by one stream
    assert {(u.name, u.part) for u in flat} == {(n, k) for n in NAMES[:3] for k in range(3)}


def test_streams_sharing_a_shard_read_each_sample_once_per_epoch(toy_shards):
    # 4 train shards x 16 samples for 2 ranks x 4 workers: each shard is split in two.
    shard_set = open_shard_set(toy_shards)
    keys = []
    for rank in range(2):
        cfg = StreamConfig(batch_size=4, shuffle_buffer=4, rank=rank, world_size=2, workers=4)
        keys += [k for b in _batches(make_loader(shard_set, cfg), 8) for k in b["keys"]]
    assert len(keys) == len(set(keys)) == 64


def test_instruction_choice_is_seeded_and_varies_per_epoch():
    picks = [choose_instruction(TOY_INSTRUCTIONS, 0, e, "ep1_000003") for e in range(30)]
    assert set(picks) == set(TOY_INSTRUCTIONS)
    assert picks == [choose_instruction(TOY_INSTRUCTIONS, 0, e, "ep1_000003") for e in range(30)]


def _batches(loader, n):
    return list(itertools.islice(iter(loader), n))


def test_batches_are_uint8_and_instructions_come_from_the_sample(toy_shards):
    cfg = StreamConfig(cameras=("head", "left_wrist"), batch_size=4, shuffle_buffer=8)
    (batch,) = _batches(make_loader(open_shard_set(toy_shards), cfg), 1)
    assert batch["images"].dtype == torch.uint8
    assert batch["images"].shape == (4, 2, 224, 224, 3)
    assert batch["actions"].shape == (4, 4, 3) and batch["actions"].dtype == torch.float32
    assert all(i in TOY_INSTRUCTIONS for i in batch["instructions"])
    assert batch["valid"].tolist() == [min(4, 16 - int(k[-6:])) for k in batch["keys"]]


def test_ranks_and_workers_read_disjoint_samples_covering_an_epoch(many_toy_shards):
    shard_set = open_shard_set(many_toy_shards)
    keys = []
    for rank in range(2):
        cfg = StreamConfig(batch_size=4, shuffle_buffer=4, rank=rank, world_size=2, workers=2)
        # 12 shards x 8 samples over 4 streams: 24 samples (6 batches) per stream per epoch.
        batches = _batches(make_loader(shard_set, cfg), 12)
        assert {b["position"].sets[0][0] for b in batches} == {0}  # (epoch, taken) of set 0
        keys += [k for b in batches for k in b["keys"]]
    assert len(keys) == len(set(keys)) == 96


def test_epochs_shuffle_samples_differently(toy_shards):
    cfg = StreamConfig(batch_size=8, shuffle_buffer=16)
    batches = _batches(make_loader(open_shard_set(toy_shards), cfg), 16)
    first = [k for b in batches[:8] for k in b["keys"]]
    second = [k for b in batches[8:] for k in b["keys"]]
    assert sorted(first) == sorted(second) and first != second


def test_resume_reproduces_the_following_batches(many_toy_shards):
    shard_set = open_shard_set(many_toy_shards)
    cfg = StreamConfig(batch_size=4, shuffle_buffer=6, workers=2)
    straight = _batches(make_loader(shard_set, cfg), 40)
    state = StreamState()
    for batch in straight[:27]:  # odd count: the restart must begin with worker 1's stream
        state.update(batch)
    state = StreamState.from_dict(state.to_dict())
    resumed = _batches(make_loader(shard_set, cfg, state), 13)
    assert [b["keys"] for b in resumed] == [b["keys"] for b in straight[27:]]
    assert [b["instructions"] for b in resumed] == [b["instructions"] for b in straight[27:]]
    assert torch.equal(resumed[0]["images"], straight[27]["images"])


def test_a_truncated_shard_is_skipped_and_counted(toy_shards, caplog):
    bad = toy_shards / "train-000001.tar"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    cfg = StreamConfig(batch_size=4, finite=True)
    state = StreamState()
    keys = []
    for batch in make_loader(open_shard_set(toy_shards), cfg):
        state.update(batch)
        keys += batch["keys"]
    assert state.bad_shards == {"train-000001.tar"}
    assert "skipping the rest of shard" in caplog.text
    per_episode = Counter(k.split("_")[0] for k in keys)
    assert 0 < per_episode["ep1"] < 16
    assert per_episode["ep0"] == per_episode["ep2"] == per_episode["ep3"] == 16


def test_missing_camera_names_the_cameras_the_set_has(toy_shards):
    cfg = StreamConfig(cameras=("head", "low"))
    with pytest.raises(ShardSetError, match="no camera low.*has head, left_wrist, right_wrist"):
        make_loader(open_shard_set(toy_shards), cfg)


def test_bad_folders_give_one_line_reasons(tmp_path, toy_shards):
    with pytest.raises(ShardSetError, match="no such folder"):
        open_shard_set(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardSetError, match="empty"):
        open_shard_set(tmp_path / "empty")
    (toy_shards / "stats.json").unlink()
    with pytest.raises(ShardSetError, match="stats.json: missing"):
        open_shard_set(toy_shards)


def test_stats_without_the_manifest_dataset_is_refused(toy_shards):
    path = toy_shards / "stats.json"
    path.write_text(path.read_text().replace('"toy"', '"other"'))
    with pytest.raises(StatsError, match="no entry for dataset 'toy'"):
        open_shard_set(toy_shards)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"action_dim": 4}, "stats.json: action has 3 dims, the manifest's action_dim is 4"),
        ({"proprio_dim": 2}, "stats.json: no proprio statistics, the manifest's proprio_dim is 2"),
    ],
)
def test_stats_that_do_not_fit_the_manifest_are_refused(toy_shards, manifest, message):
    path = toy_shards / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **manifest}))
    with pytest.raises(StatsError) as caught:
        open_shard_set(toy_shards)
    assert str(caught.value).startswith(f"{toy_shards / message}"), caught.value


def test_reads_a_shard_set_over_http(toy_shards):
    handler = functools.partial(_QuietHandler, directory=str(toy_shards))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        shard_set = open_shard_set(url)
        batches = _batches(make_loader(shard_set, StreamConfig(batch_size=8)), 8)
        assert len({k for b in batches for k in b["keys"]}) == 64
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("workers", [0, 2])
def test_decode_threads_give_the_same_batches(toy_shards, workers):
    (broken,) = break_jpegs(toy_shards / "train-000000.tar")
    shard_set = open_shard_set(toy_shards)
    runs = []
    for threads in (0, 3):
        cfg = StreamConfig(batch_size=5, workers=workers, decode_threads=threads, finite=True)
        runs.append(list(make_loader(shard_set, cfg)))
    plain, threaded = runs
    keys = [k for b in plain for k in b["keys"]]
    assert broken not in keys and len(keys) == 4 * 16 - 1  # the bad sample skipped, once
    assert [b["keys"] for b in threaded] == [b["keys"] for b in plain]
    for a, b in zip(plain, threaded, strict=True):
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["actions"], b["actions"])
        assert a["position"] == b["position"]


def _break_member(shard, key: str, member: str) -> None:
    """Overwrite the start of one sample's member with bytes no decoder takes."""
    with tarfile.open(shard) as tar:
        (found,) = [m for m in tar.getmembers() if m.name == f"{key}.{member}"]
    with open(shard, "r+b") as f:
        f.seek(found.offset_data)
        f.write(b"\x00" * 16)


def test_decode_threads_report_each_bad_sample_as_inline_does(toy_shards, caplog):
    # The threads decode only the JPEGs while the stream checks the rest: a sample bad in
    # its image, its actions or both is still reported once, by its image's problem first.
    shard = toy_shards / "train-000000.tar"
    with tarfile.open(shard) as tar:
        keys = sorted({m.name.split(".")[0] for m in tar.getmembers()})[:3]
    _break_member(shard, keys[0], "head.jpg")
    _break_member(shard, keys[1], "actions.npy")
    _break_member(shard, keys[2], "head.jpg")
    _break_member(shard, keys[2], "actions.npy")
    shard_set = open_shard_set(toy_shards)
    runs = {}
    for threads in (0, 3):
        caplog.clear()
        cfg = StreamConfig(batch_size=5, decode_threads=threads, finite=True)
        batches = list(make_loader(shard_set, cfg))
        bad = [k for b in batches for k in b["bad_samples"]]
        runs[threads] = ([b["keys"] for b in batches], bad, _warnings(caplog))
    assert runs[3] == runs[0]
    keys_read, bad, warnings = runs[0]
    assert sorted(bad) == [f"train-000000.tar/{k}" for k in keys]
    assert not {k for batch in keys_read for k in batch} & set(keys)
    by_key = {k: next(w for w in warnings if f"sample {k}:" in w) for k in keys}
    assert "actions.npy" not in by_key[keys[0]] and "actions.npy" not in by_key[keys[2]]
    assert "actions.npy is not a .npy file" in by_key[keys[1]]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_set_where_no_sample_decodes_stops_with_one_line(toy_shards, workers, deadline, caplog):
    shard_set = open_shard_set(no_sample_decodes(toy_shards))
    cfg = StreamConfig(batch_size=4, workers=workers)
    with pytest.raises(ShardSetError) as caught:
        next(iter(make_loader(shard_set, cfg)))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{toy_shards}: "), message
    # One pass over the set (64 train samples) is less than the limit of 1000.
    assert "64 train samples in a row did not decode" in message
    assert "does not decode" in message and f"vla-data verify {toy_shards}" in message
    if workers == 0:  # workers log in their own processes
        assert len(_warnings(caplog)) <= 5


def test_bad_samples_are_skipped_counted_and_warned_about_sparingly(toy_shards, caplog):
    broken = break_jpegs(toy_shards / "train-000000.tar", 16)  # every sample of one shard
    cfg = StreamConfig(batch_size=8, shuffle_buffer=8)
    state = StreamState()
    for batch in _batches(make_loader(open_shard_set(toy_shards), cfg), 24):  # 4 epochs
        state.update(batch)
    assert state.bad_samples == {f"train-000000.tar/{k}" for k in broken}
    warnings = _warnings(caplog)
    assert 3 <= len(warnings) <= 5, warnings  # ~64 bad samples read
    assert any("10 bad samples" in w for w in warnings)


def test_a_mixture_stops_on_the_set_that_does_not_decode(tmp_path, deadline):
    good = write_toy_shards(tmp_path / "good")
    bad = write_toy_shards(tmp_path / "bad", dataset="bad")
    for shard in bad.glob("train-*.tar"):
        break_jpegs(shard, 16)
    mixture = open_mixture([(str(good), 1.0), (str(bad), 1.0)])
    with pytest.raises(ShardSetError, match=f"^{bad}: 64 train samples in a row"):
        _batches(make_loader(mixture, StreamConfig(batch_size=4)), 100)


@pytest.mark.parametrize("pin_memory", [True, False])
def test_batches_from_workers_stay_intact_when_kept(toy_shards, pin_memory):
    # 32 batches kept from 2 workers, far more than their buffers: a buffer handed back too
    # early, or reused without the images being taken out, would change kept batches.
    shard_set = open_shard_set(toy_shards)

    def images_by_key(workers: int) -> dict[str, torch.Tensor]:
        # pin_memory asks for the workers' ring of reused buffers; without CUDA nothing is
        # pinned, so the images are cloned out of it, and the buffers' hand-back is tested.
        cfg = StreamConfig(batch_size=2, finite=True, workers=workers, pin_memory=pin_memory)
        batches = list(make_loader(shard_set, cfg))
        return {k: b["images"][i] for b in batches for i, k in enumerate(b["keys"])}

    inline, workers = images_by_key(0), images_by_key(2)
    assert inline.keys() == workers.keys() and len(inline) == 64
    assert all(torch.equal(inline[k], workers[k]) for k in inline)


EXITS_WITH_A_LOADER_OPEN = """
import sys
from shards.reader import StreamConfig, make_loader
from shards.source import open_shard_set

config = StreamConfig(cameras=("head", "left_wrist"), batch_size=4, workers=2)
batches = iter(make_loader(open_shard_set(sys.argv[1]), config))  # a global, left open
print(len(next(batches)["keys"]), flush=True)
"""


def test_a_script_exits_with_a_loader_still_open(toy_shards):
    # Its workers ignore SIGTERM, which multiprocessing sends them at exit before waiting
    # for them: without closing the loader first, the script would never end.
    try:
        done = subprocess.run(
            [sys.executable, "-c", EXITS_WITH_A_LOADER_OPEN, str(toy_shards)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the script hung at exit with its loader open")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4"]
    assert "Traceback" not in done.stderr, done.stderr
