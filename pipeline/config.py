"""Typed options of a conversion; the CLI only fills these in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError
from pipeline.inputs.cameras import parse_cameras
from pipeline.inputs.layout import MAX_INSTRUCTION_CHARS, InputOptions
from pipeline.inputs.registry import LAYOUTS
from shards.format import SUBSAMPLINGS, JpegStorage
from shards.loader_plan import AUTO, available_cores, parse_count
from shards.platforms import platform

DEFAULT_CHUNK = 8  # OFT's LIBERO chunk, for sets made without --robot


def parse_val_episodes(text: str) -> float | int:
    """`3` is a count of episodes, `0.05` a fraction of them, `0` none."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--val-episodes: {text!r} is neither a count nor a fraction") from None
    if value < 0:
        raise ConfigError("--val-episodes must not be negative")
    if value.is_integer() and "." not in text:
        return int(value)
    if value >= 1:
        raise ConfigError("--val-episodes as a fraction must be below 1 (or give a count)")
    return value


def parse_part(text: str) -> tuple[int, int]:
    """`2/8` -> (2, 8): the second of eight parts."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--part: expected I/N such as 2/8, got {text!r}") from None
    if not 1 <= index <= count:
        raise ConfigError(f"--part: {text!r} needs 1 <= I <= N")
    return index, count


def process_count(value: int | str) -> int:
    """`--workers` of a command that runs processes: a count, or `auto`: one per core this
    process may use (its CPU affinity and cgroup quota, as the trainer's loader counts)."""
    try:
        count = parse_count(value, "--workers")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if count == AUTO:
        return available_cores()[0]
    if count < 1:
        raise ConfigError("--workers must be at least 1 (or auto)")
    return count


def parse_dims(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in text.split(",") if d.strip())
    except ValueError:
        raise ConfigError(f"expected comma-separated dimension numbers, got {text!r}") from None


@dataclass
class PlanConfig:
    """Which episodes, cameras and split a conversion uses (shared by convert and stats)."""

    episodes_dir: Path
    layout: str | None = None  # None: detected from the files
    # None: every camera most good episodes have; else names (own or set), `own:set` renames
    cameras: tuple[str, ...] | None = None
    # A fraction of the good episodes, or a count; None: the input's own val split where its
    # layout keeps one (RLDS), else DEFAULT_VAL_EPISODES
    val_episodes: float | int | None = None
    seed: int = 0  # seeds the train/val split and the sample shuffle
    # For episodes without language (aloha, robomimic): text, or a JSON/YAML mapping file
    instruction: str | None = None
    no_normalize_dims: tuple[int, ...] = ()  # action dims left out of normalization (mask false)
    action_dim: int | None = None  # None: the width most episodes have; others are skipped
    name: str | None = None  # dataset name; default the layout's (the input folder's name)
    rlds_dataset: str | None = None  # which dataset of a TFDS data folder holding several
    part: tuple[int, int] | None = None  # (i, n): only every n-th episode from the i-th, 1-based
    workers: int | str = AUTO  # processes; "auto": one per core this process may use
    progress: bool = True  # show progress bars
    # An OpenVLA-OFT platform (shards.platforms): its action width and masks, its chunk and
    # normalization for runs on the set, and for libero OFT's data conventions
    robot: str | None = None

    def __post_init__(self) -> None:
        self.episodes_dir = Path(self.episodes_dir)
        self._apply_robot()
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(f"--layout: unknown layout {self.layout!r}; use one of {LAYOUTS}")
        if self.cameras is not None:
            parse_cameras(self.cameras)  # names and renames checked before any file is read
        if self.seed < 0:
            raise ConfigError("--seed must not be negative")
        if any(d < 0 for d in self.no_normalize_dims):
            raise ConfigError("--no-normalize-dims: dimensions count from 0")
        if self.instruction is not None and len(self.instruction) > MAX_INSTRUCTION_CHARS:
            raise ConfigError(
                f"--instruction has {len(self.instruction)} characters, "
                f"over the limit of {MAX_INSTRUCTION_CHARS}"
            )
        if self.part is not None and not 1 <= self.part[0] <= self.part[1]:
            raise ConfigError("--part: needs 1 <= I <= N")
        if self.action_dim is not None and self.action_dim < 1:
            raise ConfigError("--action-dim must be at least 1")
        self.workers = process_count(self.workers)
        if isinstance(self.val_episodes, float) and not 0 <= self.val_episodes < 1:
            raise ConfigError("--val-episodes as a fraction must be in [0, 1)")
        if self.val_episodes is not None and self.val_episodes < 0:
            raise ConfigError("--val-episodes must not be negative")
        if self.rlds_dataset is not None and not self.rlds_dataset.strip():
            raise ConfigError("--rlds-dataset must name a dataset")

    def _apply_robot(self) -> None:
        """--robot fills --action-dim and --no-normalize-dims; a value given that OFT would
        decode differently is refused."""
        if self.robot is None:
            return
        try:
            target = platform(self.robot)
        except ValueError as exc:
            raise ConfigError(f"--robot: {exc}") from None
        if self.action_dim not in (None, target.action_dim):
            raise ConfigError(
                f"--action-dim {self.action_dim} conflicts with --robot {self.robot}, whose "
                f"actions OpenVLA-OFT decodes as {target.action_dim} dims; drop one"
            )
        self.action_dim = target.action_dim
        if self.no_normalize_dims and tuple(self.no_normalize_dims) != target.no_normalize_dims:
            raise ConfigError(
                f"--no-normalize-dims conflicts with --robot {self.robot}, whose masks are "
                f"OpenVLA-OFT's ({list(target.no_normalize_dims)} left raw); drop one"
            )
        self.no_normalize_dims = target.no_normalize_dims

    @property
    def input_options(self) -> InputOptions:
        """What the options say about reading the input, for its layout."""
        return InputOptions(dataset=self.rlds_dataset)


@dataclass
class ConvertConfig(PlanConfig):
    """Everything `vla-data convert` needs beyond the plan."""

    shards_dir: Path = Path("shards")
    image_size: int = 224  # square side of the stored images
    jpeg_quality: int = 95
    jpeg_subsampling: str = "420"  # chroma subsampling of the stored frames (SUBSAMPLINGS)
    chunk: int | None = None  # action rows per sample; None: the robot's, else DEFAULT_CHUNK
    shard_samples: int = 1000  # samples per tar shard
    strict: bool = False  # any bad episode stops the conversion before a shard is written
    overwrite: bool = False  # replace an existing shard set (never anything else)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.shards_dir = Path(self.shards_dir)
        self._resolve_chunk()
        if not 16 <= self.image_size <= 4096:
            raise ConfigError("--image-size must be between 16 and 4096")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError("--jpeg-quality must be between 1 and 100")
        if self.jpeg_subsampling not in SUBSAMPLINGS:
            raise ConfigError(f"--jpeg-subsampling must be one of {', '.join(SUBSAMPLINGS)}")
        if self.chunk < 1:
            raise ConfigError("--chunk must be at least 1")
        if self.shard_samples < 1:
            raise ConfigError("--shard-samples must be at least 1")

    def _resolve_chunk(self) -> None:
        robot_chunk = platform(self.robot).chunk if self.robot else None
        if self.chunk is None:
            self.chunk = robot_chunk or DEFAULT_CHUNK
        elif robot_chunk not in (None, self.chunk):
            raise ConfigError(
                f"--chunk {self.chunk} conflicts with --robot {self.robot}: OpenVLA-OFT decodes "
                f"{self.robot} policies in chunks of {robot_chunk}; drop --chunk"
            )

    @property
    def jpeg(self) -> JpegStorage:
        return JpegStorage(self.jpeg_quality, self.jpeg_subsampling)

    def recorded_options(self, dataset: str, val_episodes: float | int | None) -> dict:
        """The options that shape the output (workers and progress do not), for the manifest:
        the set's `dataset` name and the `val_episodes` in force (see `val_default`)."""
        # --rlds-dataset only when given: manifests of sets made without it stay as they were.
        given = {"rlds_dataset": self.rlds_dataset} if self.rlds_dataset is not None else {}
        return {
            "layout": self.layout,
            "cameras": list(self.cameras) if self.cameras else None,
            "val_episodes": val_episodes,
            "seed": self.seed,
            "instruction": self.instruction,
            "no_normalize_dims": list(self.no_normalize_dims),
            "action_dim": self.action_dim,
            "name": dataset,
            "part": list(self.part) if self.part else None,
            "image_size": self.image_size,
            "jpeg_quality": self.jpeg_quality,
            "jpeg_subsampling": self.jpeg_subsampling,
            "chunk": self.chunk,
            "shard_samples": self.shard_samples,
            "strict": self.strict,
            **given,
            # Only when given, so sets made without it keep their manifests byte for byte.
            **({"robot": self.robot} if self.robot else {}),
        }
