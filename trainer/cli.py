"""`vla-train`: fine-tune OpenVLA on a shard set; options fill TrainConfig, errors are one line."""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from shards.commandline import camera_list, one_line_errors, renamed
from shards.format import SPLITS
from stats.normalize import NORMALIZATIONS
from trainer.inference.export import TARGETS, ExportConfig, export
from trainer.inference.predict import PredictConfig, compare, print_report
from trainer.model.oft_files import PLATFORM_FILE
from trainer.run.checkpoint import latest_checkpoint, load_config
from trainer.run.decode_choice import DECODES
from trainer.run.loadtest import LoadtestConfig, loadtest
from trainer.run.loop import train as train_run
from trainer.run.train_config import EPISODE_TAILS, PRECISIONS, ConfigError, TrainConfig
from trainer.serving.server import DEFAULT_PORT, ServeConfig, serve

_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


class _TrainByDefault(click.Group):
    """`vla-train --shards S ...` means `vla-train train ...`; other verbs can sit beside it.

    Only options go to `train`: a mistyped verb (`predcit`) gets click's "No such command",
    with its suggestion, and `--help` shows the training options beside the verbs.
    """

    _OWN = ("--version",)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first and first.startswith("-") and first not in (*ctx.help_option_names, *self._OWN):
            args = ["train", *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help(ctx, formatter)
        train_cmd = self.commands["train"]
        with click.Context(train_cmd, info_name="train", parent=ctx) as sub:
            rows = [r for p in train_cmd.get_params(sub) if (r := p.get_help_record(sub))]
        with formatter.section("Training options (vla-train [train] OPTIONS)"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        # The one place a user's error becomes one line, for every command of the group.
        return one_line_errors(super().invoke)(ctx)


@click.group(cls=_TrainByDefault, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vla-shards")
def main() -> None:
    """Fine-tune OpenVLA with LoRA and an L1 action-chunk head (OpenVLA-OFT recipe)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def _cameras(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    return camera_list(value)


def _option(name: str, help: str, **kwargs: Any):
    flag = "--" + name.replace("_", "-")
    default = _DEFAULTS[name]
    return click.option(flag, name, default=default, show_default=True, help=help, **kwargs)


@main.command()
@click.option(
    "--shards", multiple=True,
    help="Shard set folder or http(s)/s3 URL prefix; repeat to mix sets, each SOURCE[:WEIGHT] "
    "(default weight 1), e.g. --shards a/ --shards b/:0.3.",
)  # fmt: skip
@_option("run_dir", "Folder for metrics.jsonl and step-N/ checkpoints.", type=click.Path())
@click.option(
    "--resume",
    type=click.Path(file_okay=False),
    help="Continue this run folder exactly from its latest step-N (options come from it).",
)
@click.option(
    "--allow-new-data", is_flag=True,
    help="With --resume: go on although a set's shards or stats.json differ from the run's.",
)  # fmt: skip
@_option("base", "tiny, openvla-7b-random, openvla-7b-slim, a local openvla-7b folder or a hub id.")
@_option("lora_rank", "LoRA rank r (alpha = min(r, 16)).")
@click.option(
    "--init-from", "init_from", type=click.Path(file_okay=False),
    help="Start from this checkpoint's LoRA and head: a step-N folder or an OpenVLA-OFT folder.",
)  # fmt: skip
@_option("batch_size", "Samples per device per micro-batch.")
@_option("grad_accum", "Micro-batches per optimizer step.")
@_option("lr", "AdamW learning rate.")
@_option("decay_step", "Optimizer step where the learning rate drops x0.1.")
@_option("warmup_steps", "Linear warmup steps (composes with the decay).")
@_option("max_steps", "Optimizer steps to train to.")
@_option("seed", "Seeds initialization, data order, instructions and augmentation.")
@_option(
    "workers",
    "DataLoader worker processes per device; 0 reads in the training process; auto chooses "
    "from the cores this process may use and the ranks per machine.",
)
@_option("decode_threads", "Threads decoding JPEGs in each loading process (0: inline; auto).")
@_option(
    "decode",
    "Where JPEGs are decoded: cpu (the loader), device (the GPU, nvJPEG), or auto: the CPU, "
    "moved to the GPU when the first steps wait on the loader.",
    type=click.Choice(DECODES),
)
@_option("shuffle_buffer", "Samples held per reading stream for shuffling.")
@click.option(
    "--image-aug/--no-image-aug", "image_aug", default=True, show_default=True,
    help="OFT crop and colour jitter on the GPU (evaluation uses the centre crop).",
)  # fmt: skip
@_option(
    "normalization",
    "Action and state normalization bounds [default: the set's --robot's, else bounds_q99].",
    type=click.Choice(NORMALIZATIONS),
)
@_option(
    "episode_tail",
    "Episodes' last chunk-1 steps: pad (masked rows) or drop (OpenVLA-OFT's way).",
    type=click.Choice(EPISODE_TAILS),
)
@click.option(
    "--cameras", default="", callback=_cameras,
    help="Comma-separated cameras fed to the model, primary first [default: head,left_wrist "
    "when the set has both, else its one camera or its first two].",
)  # fmt: skip
@renamed("--images", "--cameras")
@_option("save_every", "Save step-N/ every N steps (and at the last step).")
@_option("keep", "Checkpoints to keep.")
@_option("val_every", "Log the val split's L1 every N steps (0: never).")
@click.option("--grad-checkpointing", is_flag=True, help="Recompute activations in backward.")
@click.option(
    "--proprio/--no-proprio", "proprio", default=None,
    help="Feed the robot state as one token (OFT). [default: when every set carries it]",
)  # fmt: skip
@click.option("--film", is_flag=True, help="The instruction modulates the vision towers (OFT+).")
@_option(
    "precision",
    "fp32: LoRA, head and targets in float32; bf16: OpenVLA-OFT's bf16 forward and targets on "
    "any device, float32 master weights.",
    type=click.Choice(PRECISIONS),
)
@_option("device", "Where to train.", type=click.Choice(["auto", "cpu", "cuda"]))
@_option("log_every", "Print a summary line every N steps (a terminal also gets a live line).")
@click.option(
    "--wandb", "wandb_project", metavar="PROJECT",
    help="Log config and metrics to this Weights & Biases project (the wandb extra; "
    "WANDB_MODE=offline logs under RUN_DIR/wandb/); --resume goes on in the same W&B run.",
)  # fmt: skip
@click.option("--wandb-entity", "wandb_entity", help="W&B team or user owning --wandb's project.")
@click.pass_context
def train(ctx: click.Context, resume: str | None, allow_new_data: bool, **options: Any) -> None:
    """Train on --shards into --run-dir, or continue a run with --resume RUN_DIR."""
    if allow_new_data and resume is None:
        raise ConfigError("--allow-new-data goes with --resume RUN_DIR")
    if resume is None:
        train_run(TrainConfig(**options))
        return
    ckpt = latest_checkpoint(Path(resume))  # the newest whole one, said when it is not the last
    cfg = _resumed_config(ctx, ckpt, options)
    train_run(cfg, resume=True, allow_new_data=allow_new_data, ckpt=ckpt)


def _resumed_config(ctx: click.Context, ckpt: Path, options: dict[str, Any]) -> TrainConfig:
    given = {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    if "run_dir" in given:
        raise ConfigError("--resume names the run folder; leave out --run-dir")
    return load_config(ckpt).resumed({**given, "run_dir": ckpt.parent})


@main.command()
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.option("--shards", required=True, help="Shard set folder or URL to predict samples of.")
@click.option(
    "--split", type=click.Choice(SPLITS), default="val", show_default=True,
    help="Split to predict.",
)  # fmt: skip
@click.option(
    "-n", "--samples", default=16, show_default=True, help="Samples (0: the whole split).",
)  # fmt: skip
@renamed("--n", "-n/--samples")
@click.option("--base", help="Base to load the adapter onto [default: the one trained on].")
@click.option("--dataset", help="Stats entry to denormalize with [default: the set's].")
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where to run the model.",
)  # fmt: skip
@click.option(
    "--cameras", default="", callback=_cameras,
    help="OpenVLA-OFT folders: cameras in the run's order [default: the set's cameras].",
)  # fmt: skip
@renamed("--images", "--cameras")
@click.option(
    "--normalization", type=click.Choice(NORMALIZATIONS),
    help="OpenVLA-OFT folders: [default: OFT's for the width, bounds for 14 dims].",
)  # fmt: skip
def predict(**options: Any) -> None:
    """Predict chunks of CKPT (RUN_DIR/step-N or an OpenVLA-OFT checkpoint folder) on
    --shards; print them beside the true ones."""
    print_report(compare(PredictConfig(**options)))


@main.command("export")
@click.argument("step_dir", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--to", type=click.Choice(TARGETS), default="oft", show_default=True,
    help="oft: OpenVLA-OFT's checkpoint folder (with the merged model its evaluation loads); "
    "merged: the LoRA merged into the base, in openvla-7b's layout.",
)  # fmt: skip
@click.option("--base", help="Base to merge into [default: the one trained on].")
@click.option(
    "--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
    help="Where to merge the weights.",
)  # fmt: skip
def export_command(**options: Any) -> None:
    """Write STEP_DIR (RUN_DIR/step-N) as OUT in another project's layout."""
    out = export(ExportConfig(**options))
    click.echo(f"wrote {out}")
    if (out / PLATFORM_FILE).is_file():
        note = json.loads((out / PLATFORM_FILE).read_text())
        click.echo(f"OpenVLA-OFT platform {note['platform']}: {note['how']}")


@main.command("loadtest")
@click.argument("source", metavar="SHARDS")
@click.option(
    "--workers", default="auto", show_default=True,
    help="DataLoader worker processes (0: read in this process; auto: as vla-train chooses).",
)  # fmt: skip
@click.option(
    "--decode-threads", default="auto", show_default=True,
    help="Threads decoding JPEGs in each loading process (0: inline; auto).",
)  # fmt: skip
@click.option("--batch-size", default=8, show_default=True, help="Samples per batch.")
@click.option(
    "--cameras", default="head,left_wrist", show_default=True,
    help="Comma-separated cameras to load, as vla-train --cameras.",
)  # fmt: skip
@renamed("--images", "--cameras")
@click.option("-n", "--samples", default=4000, show_default=True, help="Samples to time.")
@click.option(
    "--shuffle-buffer", default=1000, show_default=True,
    help="Samples held per reading stream for shuffling.",
)  # fmt: skip
def loadtest_command(source: str, workers: str, decode_threads: str, batch_size: int,
                     cameras: str, samples: int, shuffle_buffer: int) -> None:  # fmt: skip
    """Time the trainer's CPU-side loader alone on the shard set SHARDS (a folder or URL):
    samples/s and MB/s of shard data."""
    config = LoadtestConfig(
        source, workers, batch_size, camera_list(cameras), samples,
        shuffle_buffer=shuffle_buffer, decode_threads=decode_threads,
    )  # fmt: skip
    result = loadtest(config)
    click.echo(result.plan.line())
    click.echo(
        f"{result.samples_per_s:.1f} samples/s, {result.mb_per_s:.1f} MB/s "
        f"({result.samples} samples in {result.seconds:.2f} s, batch {batch_size}, "
        f"cameras {cameras}, tokenization included)"
    )


@main.command("serve")
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.option(
    "--host", default="127.0.0.1", show_default=True,
    help="Address to listen on; 0.0.0.0 opens it to the network (trusted networks only).",
)  # fmt: skip
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True,
    help="Port (OpenVLA-OFT's clients use 8777; 0: any free one).",
)  # fmt: skip
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where to run the model.",
)  # fmt: skip
@click.option("--base", help="Base to load the adapter onto [default: the one trained on].")
@click.option("--dataset", help="Stats entry to normalize with [default: the only one].")
@click.option(
    "--cameras", default="", callback=_cameras,
    help="OpenVLA-OFT folders: cameras in the run's order, primary first.",
)  # fmt: skip
@click.option(
    "--normalization", type=click.Choice(NORMALIZATIONS),
    help="OpenVLA-OFT folders: [default: OFT's for the width, bounds for 14 dims].",
)  # fmt: skip
def serve_command(**options: Any) -> None:
    """Serve CKPT (RUN_DIR/step-N or an OpenVLA-OFT folder) to OpenVLA-OFT's deploy clients:
    POST /act, GET /health."""
    serve(ServeConfig(**options), click.echo)


@main.command("eval")
@click.argument("ckpt", required=False, type=click.Path(path_type=Path))
@click.option("--env", required=True, help="aloha-transfer-cube or aloha-insertion.")
@click.option(
    "--policy", help="Run a built-in policy instead of CKPT: scripted (the task's script, "
    "reads object poses) or zero (all targets 0: a floor).",
)  # fmt: skip
@click.option("--episodes", default=10, show_default=True, help="Episodes to run.")
@click.option("--seed", default=0, show_default=True, help="Episode i resets with SEED + i.")
@click.option(
    "--max-steps", default=400, show_default=True,
    help="Steps (50 Hz) before an episode counts as failed.",
)  # fmt: skip
@click.option(
    "--execute-steps", type=int,
    help="Actions of each predicted chunk run open-loop before the next query [default: all].",
)  # fmt: skip
@click.option(
    "--cameras", default="", callback=_cameras,
    help="SIM:RUN pairs feeding a simulator camera to a camera the policy was trained on, "
    "e.g. top:head [default: top for a one-camera policy].",
)  # fmt: skip
@click.option("--instruction", help="What the policy is told [default: the task's].")
@click.option("--videos", default=2, show_default=True, help="First episodes saved as mp4.")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(path_type=Path),
    help="Folder for eval_info.json and videos/.",
)  # fmt: skip
@click.option("--base", help="Base to load the adapter onto [default: the one trained on].")
@click.option("--dataset", help="Stats entry to denormalize with [default: the only one].")
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where to run the model.",
)  # fmt: skip
def eval_command(**options: Any) -> None:
    """Run CKPT (or --policy scripted) in a simulated ALOHA task: success rate, eval_info.json
    and videos in --out."""
    from trainer.inference.sim_eval import run_command  # the simulator loads only for this command

    click.echo(run_command(options))


if __name__ == "__main__":  # torchrun -m trainer.cli ...
    main()
