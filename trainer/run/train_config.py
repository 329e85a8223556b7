"""TrainConfig: every option of a fine-tuning run, checked once, saved with each checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from common.errors import ConfigError
from common.numbers import check_float
from shards.loader_plan import AUTO, parse_count
from shards.mixture import parse_source
from stats.normalize import NORMALIZATIONS
from trainer.run.decode_choice import DECODES

TRAIN_CONFIG_FILE = "train_config.json"
DEFAULT_NORMALIZATION = "bounds_q99"  # OFT's LIBERO bounds, for sets made without --robot
EPISODE_TAILS = ("pad", "drop")
PRECISIONS = ("fp32", "bf16")
# What --resume may change: where the run and the shards are now (checked against the run's
# datasets, dims and weights), how long to go on, how often to save or validate, and the
# device, and decode threads (they change how fast the same batches come, not which). Anything
# else would silently make a different run, or (workers) a different data order.
RESUME_OVERRIDABLE = frozenset(
    {
        "run_dir",
        "shards",
        "max_steps",
        "save_every",
        "keep",
        "val_every",
        "device",
        "decode_threads",
        "log_every",
        "wandb_project",
        "wandb_entity",
    }
)


# Options whose default a run saved before they existed did not run with: such a run read
# padded episode tails, fed no robot state and decoded on the CPU, and resumes that way.
SAVED_BEFORE = {"episode_tail": "pad", "proprio": False, "decode": "cpu"}
# Options a run saved under an older name: --cameras was once --images.
RENAMED = {"images": "cameras"}


DEFAULT_CAMERAS = ("head", "left_wrist")  # OFT's pair: third-person view, then a wrist


def default_cameras(set_cameras: list[list[str]]) -> tuple[str, ...]:
    """The cameras to train on when --cameras is not given, from each set's manifest cameras.

    OFT's pair when every set has it; else the cameras every set has, in the first set's
    order: the one when there is one, the first two otherwise.
    """
    if all(set(DEFAULT_CAMERAS) <= set(c) for c in set_cameras):
        return DEFAULT_CAMERAS
    common = [c for c in set_cameras[0] if all(c in other for other in set_cameras)]
    if not common:
        raise ConfigError("the shard sets share no camera; pass --cameras")
    return tuple(common[:2])


@dataclass
class TrainConfig:
    """One fine-tuning run (OpenVLA-OFT recipe: LoRA + L1 head on normalized action chunks)."""

    shards: tuple[str, ...] = ()
    """Shard sets, each SOURCE or SOURCE:WEIGHT (weight 1 if none): a folder or an http(s) or
    s3:// prefix holding manifest.json and stats.json. Samples come from each set in
    proportion to its weight."""
    run_dir: Path = Path("runs/vla")
    """metrics.jsonl and step-N/ checkpoints go here."""
    base: str = "openvla/openvla-7b"
    """"tiny", "openvla-7b-random", a local openvla-7b folder or a hub id."""
    lora_rank: int = 32
    init_from: str | None = None
    """LoRA and head weights to start from (the optimizer starts afresh): a step-N folder of
    ours or an OpenVLA-OFT checkpoint folder, of the same base, rank and action width."""
    batch_size: int = 8
    """Samples per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    lr: float = 5e-4
    decay_step: int = 40000
    """Optimizer step at which the learning rate drops x0.1."""
    warmup_steps: int = 0
    """Linear warmup; multiplies the decay factor, so it never undoes the decay."""
    max_steps: int = 50000
    seed: int = 0
    workers: int | str = AUTO
    """DataLoader worker processes per device (reading, decoding, collation); 0 reads in the
    training process; "auto" chooses from the cores (shards.loader_plan), and the run saves
    the number chosen, since the data order depends on it."""
    decode_threads: int | str = AUTO
    """Threads decoding each batch's JPEGs in each loading process; 0 decodes inline; "auto"."""
    decode: str = "auto"
    """Where JPEGs are decoded: "cpu" in the loader, "device" on the training GPU (nvJPEG
    through torchvision), "auto" on the CPU unless it can't keep the GPU fed
    (trainer/run/decode_choice.py). The run saves where it decoded: the two decoders' pixels
    may differ, so a resume decodes where the run did."""
    shuffle_buffer: int = 1000
    """Samples held per reading stream for shuffling (still JPEG-encoded)."""
    episode_tail: str = "drop"
    """"drop": an episode's last chunk-1 samples are skipped, as OpenVLA-OFT does; "pad": they
    train with their chunk padded and the rows past the end masked out of the loss. drop is
    the default because pad was not shown to do as well (docs/OFT.md)."""
    image_aug: bool = True
    """OFT's crop and colour jitter on the GPU; evaluation then uses the centre crop."""
    normalization: str | None = None
    """"bounds_q99" (q01/q99) or "bounds" (min/max); None: the OpenVLA-OFT platform's when
    the sets were made with --robot, else bounds_q99. The run saves what was decided."""
    cameras: tuple[str, ...] = ()
    """Cameras fed to the model, primary first; empty: DEFAULT_CAMERAS when every set has
    them, else the sets' cameras (see default_cameras), chosen when training starts."""
    save_every: int = 5000
    keep: int = 3
    """Checkpoints kept; older step-N/ folders are removed."""
    val_every: int = 0
    """Validation L1 on the val split every N steps; 0 turns it off."""
    grad_checkpointing: bool = False
    proprio: bool | None = None
    """Feed the robot state as one token (OFT's proprio); None: when every set carries it.
    The run saves what was decided."""
    film: bool = False
    """FiLM: the instruction modulates the vision towers (OFT+, for ALOHA)."""
    device: str = "auto"
    """"auto" (CUDA when present), "cpu", "cuda"."""
    precision: str = "fp32"
    """"fp32": LoRA, head and targets in float32 (the frozen base in bf16 under bf16 autocast
    on CUDA, exact float32 on the CPU); "bf16": OFT's, on every device: the base in bf16, the
    forward under bf16 autocast (LoRA and head compute in bf16) and the targets rounded to
    bf16, with float32 master weights for the optimizer (docs/OFT.md)."""
    robot: str | None = None
    """The OpenVLA-OFT platform the sets were made for (their --robot, when all agree): not
    an option; found when training starts and saved, so export knows how OFT decodes it."""
    log_every: int = 50
    """A summary line every N steps (the live line on a terminal shows every step)."""
    wandb_project: str | None = None
    """Weights & Biases project to log to; None: no W&B."""
    wandb_entity: str | None = None
    """W&B team or user owning the project; None: the logged-in user's default."""

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.cameras = tuple(self.cameras)
        # train_config.json held one string before sets could be mixed.
        self.shards = (self.shards,) if isinstance(self.shards, str) else tuple(self.shards)
        if not self.shards:
            raise ConfigError("--shards is required: a shard set folder or URL")
        for spec in self.shards:
            if not spec.strip():
                raise ConfigError("--shards is empty: give a shard set folder or URL")
            try:
                parse_source(spec)
            except ValueError as exc:
                raise ConfigError(f"--shards {exc}") from None
        for name in (
            "lora_rank",
            "batch_size",
            "grad_accum",
            "max_steps",
            "save_every",
            "keep",
            "log_every",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{_flag(name)} must be at least 1")
        for name in ("workers", "decode_threads"):
            try:
                setattr(self, name, parse_count(getattr(self, name), f"--{_flag(name)}"))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        for name in ("decay_step", "warmup_steps", "seed", "shuffle_buffer", "val_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{_flag(name)} must not be negative")
        self.lr = check_float("--lr", self.lr, above=0)
        if self.episode_tail not in EPISODE_TAILS:
            raise ConfigError(f"--episode-tail must be one of {', '.join(EPISODE_TAILS)}")
        if self.normalization is not None and self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ConfigError("--cameras needs distinct camera names")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.decode not in DECODES:
            raise ConfigError(f"--decode must be one of {', '.join(DECODES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError("--device must be auto, cpu or cuda")
        if self.wandb_entity and not self.wandb_project:
            raise ConfigError("--wandb-entity goes with --wandb PROJECT")

    @property
    def sources(self) -> list[tuple[str, float]]:
        """(source, weight) of each --shards value."""
        return [parse_source(spec) for spec in self.shards]

    def to_json(self, **records: Any) -> str:
        """The options, plus `records` that describe the run but are no option (from_json skips)."""
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["cameras"] = list(self.cameras)
        data["shards"] = list(self.shards)
        return json.dumps({**data, **records}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> TrainConfig:
        try:
            saved = json.loads(text)
            data = {**SAVED_BEFORE, **{RENAMED.get(k, k): v for k, v in saved.items()}}
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: not a readable training config ({exc})") from None

    def resumed(self, overrides: dict[str, Any]) -> TrainConfig:
        """This saved config with the options given again on resume; others may not change."""
        new = replace(self, **overrides)  # checked and normalized ("4" -> 4) like any config
        changed = sorted(
            k
            for k in overrides
            if k not in RESUME_OVERRIDABLE and getattr(new, k) != getattr(self, k)
        )
        if changed:
            flags = ", ".join(f"--{_flag(k)}" for k in changed)
            raise ConfigError(
                f"{flags} cannot change on --resume (the run was made with other values); "
                "start a new --run-dir instead"
            )
        return new


def _flag(name: str) -> str:
    return name.replace("_", "-")
