"""Every option of `vla-data`, `vla-train` and the Ray job says what it does in --help."""

from __future__ import annotations

import click
import pytest

from pipeline.cli import main as data_main
from pipeline.ray_convert import main as ray_main
from trainer.cli import main as train_main


def commands(command: click.Command, path: str):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from commands(sub, f"{path} {name}")


ALL = [
    *commands(data_main, "vla-data"),
    *commands(train_main, "vla-train"),
    ("python -m pipeline.ray_convert", ray_main),
]


@pytest.mark.parametrize(("path", "command"), ALL, ids=[path for path, _ in ALL])
def test_every_option_has_help(path, command):
    options = [p for p in command.params if isinstance(p, click.Option)]
    silent = [p.opts[0] for p in options if not (p.help or "").strip()]
    assert not silent, f"{path}: options without help: {silent}"


def test_the_ray_job_takes_every_option_of_convert():
    def names(command):
        return {o for p in command.params if isinstance(p, click.Option) for o in p.opts}

    assert names(data_main.commands["convert"]) - {"--part"} <= names(ray_main)
