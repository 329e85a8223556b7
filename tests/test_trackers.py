"""Trackers, read back with their own tools: a W&B offline run (wandb's datastore reader) that
--resume continues, and TensorBoard event files (tensorboard's EventAccumulator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_fixtures import TINY, cli, fails_with
from shard_fixtures import write_toy_shards

from trainer.run.metrics import read_metrics
from trainer.run.trackers import WANDB_ID_FILE

pytest.importorskip("wandb")
pytest.importorskip("tensorboard")

LOGGED = ("loss", "curr_l1", "future_l1", "lr", "samples_per_s", "data_wait")


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> Path:
    """A tiny run of 2 steps to W&B (offline, no network) and TensorBoard, resumed to 4."""
    tmp = tmp_path_factory.mktemp("tracked")
    shards = write_toy_shards(tmp / "shards", steps=8)
    run_dir = tmp / "run"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            env.setenv(name, str(tmp / name.lower()))
        first = cli("--shards", str(shards), "--run-dir", str(run_dir), *TINY, "--workers", "0",
                    "--max-steps", "2", "--save-every", "2", "--val-every", "2",
                    "--wandb", "vla-tests")  # fmt: skip
        assert first.exit_code == 0, first.output
        again = cli("--resume", str(run_dir), "--max-steps", "4")
        assert again.exit_code == 0, again.output
    return run_dir


def _wandb_records(run_dir: Path, run_id: str) -> list:
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    records = []
    for path in sorted(run_dir.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")):
        store = DataStore()
        store.open_for_scan(str(path))
        while (data := store.scan_data()) is not None:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            records.append(record)
    return records


def test_wandb_logs_config_and_metrics_and_resume_continues_the_run(tracked_run):
    run_id = (tracked_run / WANDB_ID_FILE).read_text().strip()
    records = _wandb_records(tracked_run, run_id)
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    # Two sessions (the run, then its --resume), both of the one W&B run.
    assert len(runs) == 2 and {r.run_id for r in runs} == {run_id}
    assert {r.project for r in runs} == {"vla-tests"}
    config = {u.key: json.loads(u.value_json) for u in runs[0].config.update}
    assert config["max_steps"] == 2 and config["base"] == "tiny" and config["lora_rank"] == 4
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {
                "/".join(i.nested_key) or i.key: json.loads(i.value_json)
                for i in record.history.item
            }
            history.setdefault(record.history.step.num, {}).update(items)
    assert sorted(history) == [1, 2, 3, 4]
    for row in read_metrics(tracked_run):
        for name in LOGGED:
            assert history[row["step"]][f"train/{name}"] == pytest.approx(row[name])
    val = read_metrics(tracked_run, "val")
    assert [r["step"] for r in val] == [2, 4]
    assert [history[r["step"]]["val/loss"] for r in val] == pytest.approx([r["loss"] for r in val])


def test_tensorboard_holds_every_step_of_both_sessions(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tracked_run / "tensorboard"))
    events.Reload()
    for name in LOGGED:
        logged = {e.step: e.value for e in events.Scalars(f"train/{name}")}
        rows = read_metrics(tracked_run)
        assert logged == pytest.approx({r["step"]: r[name] for r in rows}, rel=1e-6)
    assert [e.step for e in events.Scalars("val/loss")] == [2, 4]


def test_wandb_entity_needs_a_project(tmp_path):
    shards = write_toy_shards(tmp_path / "shards", steps=8)
    result = cli("--shards", str(shards), "--run-dir", str(tmp_path / "r"), *TINY,
                 "--wandb-entity", "team")  # fmt: skip
    fails_with(result, "--wandb-entity goes with --wandb PROJECT")
