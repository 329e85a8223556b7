"""`auto` loading: worker processes and decode threads chosen from the cores a rank has."""

from __future__ import annotations

import pytest

from shards.loader_plan import (
    AUTO,
    FEW_CORES,
    cgroup_cpu_limit,
    parse_count,
    plan_counts,
    plan_loader,
)
from trainer.run.train_config import ConfigError, TrainConfig


@pytest.mark.parametrize("cores", [1, 2, FEW_CORES])
def test_few_cores_decode_in_threads_of_the_training_process(cores):
    assert plan_counts(cores, 1) == (0, cores)


def test_many_cores_use_worker_processes_with_threads_and_leave_one_core():
    workers, threads = plan_counts(16, 1)
    assert workers >= 2 and threads >= 1
    assert workers * threads <= 15


def test_ranks_on_one_machine_share_its_cores():
    assert plan_counts(16, 8) == (0, 2)  # 2 cores per rank: threads
    assert plan_counts(128, 8) == plan_counts(16, 1)


def test_an_explicit_value_is_kept_and_the_other_fits_around_it():
    assert plan_counts(2, 1, workers=3) == (3, 1)
    assert plan_counts(16, 1, workers=0) == (0, 16)
    assert plan_counts(2, 1, threads=0) == (0, 0)
    workers, threads = plan_counts(16, 1, threads=4)
    assert threads == 4 and workers * 4 <= 15


def test_explicit_values_are_used_as_given():
    plan = plan_loader(3, 1)
    assert (plan.workers, plan.decode_threads) == (3, 1)
    assert "as given" in plan.line()


def test_auto_says_what_it_chose_and_why(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    plan = plan_loader(AUTO, AUTO)
    assert "2 rank(s) on this machine" in plan.reason
    assert plan.line().startswith("loader: ")
    assert plan_loader(0, 2).line().startswith("loader: the training process with 2 decode")
    assert plan_loader(3, 1).line().startswith("loader: 3 worker process(es), 1 decode")


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "150000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_the_cgroup_quota_is_read_from_v2_or_v1_files(tmp_path, files, limit):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_limit(tmp_path) == limit


def test_counts_on_the_command_line_are_auto_or_whole_numbers():
    assert parse_count("auto", "--workers") == AUTO
    assert parse_count("3", "--workers") == 3
    with pytest.raises(ValueError, match="--workers"):
        parse_count("many", "--workers")
    with pytest.raises(ConfigError, match="--decode-threads must not be negative"):
        TrainConfig(shards=("s",), decode_threads="-1")


def test_a_saved_worker_count_may_be_given_again_on_resume():
    saved = TrainConfig(shards=("s",), workers=2, decode_threads=1)
    assert saved.resumed({"workers": "2", "decode_threads": AUTO}).workers == 2
    with pytest.raises(ConfigError, match="--workers cannot change"):
        saved.resumed({"workers": "3"})
