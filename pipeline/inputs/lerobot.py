"""LeRobot v3.0 dataset folders: episodes from shared parquet files, frames from shared videos.

Layout (LeRobot's dataset writer): `meta/info.json` (codebase_version "v3.0", fps, features,
`data_path`/`video_path` templates), `meta/tasks.parquet` (task strings as its index, with
`task_index`), `meta/episodes/chunk-*/file-*.parquet` (per episode: `length`, `tasks`,
`data/chunk_index`, `data/file_index`, and per video feature `videos/<key>/chunk_index`,
`file_index`, `from_timestamp`), `data/chunk-*/file-*.parquet` (many episodes per file:
`action`, `observation.state`, `timestamp`, `frame_index`, `episode_index`, `task_index`) and
`videos/<key>/chunk-*/file-*.mp4` (many episodes per file, one after the other). A frame at
episode time `timestamp` sits at `from_timestamp + timestamp` in its video file.

Needs the `lerobot` extra (pyarrow, and PyAV, whose wheels bring their own FFmpeg).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from common.files import read_json
from pipeline.inputs.aloha import KNOWN_CAMERAS as ALOHA_CAMERAS
from pipeline.inputs.cameras import canonical_order, set_names
from pipeline.inputs.layout import (
    MAX_INSTRUCTION_CHARS,
    EpisodeError,
    EpisodeInfo,
    EpisodeRef,
    InputLayout,
    LayoutError,
    check_matrix,
)
from pipeline.inputs.lerobot_video import EpisodeVideo

IMAGE_PREFIX = "observation.images."
CONVERT_V21 = "python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 --repo-id=REPO_ID"
# LeRobot's image features are `observation.images.<name>`: ALOHA's names, or LIBERO's
# as its ports spell them.
KNOWN_CAMERAS = {**ALOHA_CAMERAS, "image": "head", "wrist_image": "left_wrist"}


def _needs_extra() -> None:
    try:
        import av  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise LayoutError(
            f"Reading LeRobot datasets needs the lerobot extra ({e.name} is missing): "
            "pip install 'vla-shards[lerobot]'"
        ) from None


def _task_names(path: Path) -> list[str]:
    """meta/tasks.parquet: task strings by task_index. LeRobot writes a pandas frame whose
    index holds the strings (a column named `task`, or pandas' own index column)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    index_columns = (table.schema.pandas_metadata or {}).get("index_columns", [])
    names = [c for c in ("task", *index_columns) if isinstance(c, str) and c in table.column_names]
    if not names or "task_index" not in table.column_names:
        raise LayoutError(f"{path}: expected task strings and a task_index column")
    indices, texts = table.column("task_index").to_pylist(), table.column(names[0]).to_pylist()
    by_index = {int(i): str(t) for i, t in zip(indices, texts, strict=True)}
    return [by_index.get(i, "") for i in range(max(by_index, default=-1) + 1)]


@lru_cache(maxsize=4)
def _meta(root: Path) -> tuple[dict, dict[int, dict], list[str]]:
    """info.json, each episode's row of meta/episodes, and the task strings by index."""
    import pyarrow.parquet as pq

    info_path = root / "meta" / "info.json"
    info = read_json(info_path, LayoutError, "a LeRobot v3 folder has meta/info.json")
    version = str(info.get("codebase_version", "")) if isinstance(info, dict) else ""
    if not version.startswith("v3"):
        raise LayoutError(
            f"{root} is a LeRobot {version or 'unversioned'} dataset; this reads v3.0. "
            f"Convert it with LeRobot's own tool first: {CONVERT_V21}"
        )
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    tasks_path = root / "meta" / "tasks.parquet"
    if not files or not tasks_path.is_file():
        raise LayoutError(
            f"{root}: a LeRobot v3.0 dataset needs meta/episodes/ and meta/tasks.parquet"
        )
    rows = {}
    try:
        for f in files:
            # Per-episode statistics are most of the columns and none of what we need.
            schema = pq.read_schema(f)
            wanted = [n for n in schema.names if not n.startswith("stats/")]
            for row in pq.read_table(f, columns=wanted).to_pylist():
                rows[int(row["episode_index"])] = row
        names = _task_names(tasks_path)
    except LayoutError:
        raise
    except Exception as e:  # pyarrow raises several classes for a broken file
        raise LayoutError(f"{root}: unreadable LeRobot metadata ({type(e).__name__}: {e})") from e
    return info, rows, names


def _image(value: object, camera: str, t: int) -> np.ndarray:
    """An `image` feature's cell (struct of PNG/JPEG bytes and path) as RGB uint8."""
    from PIL import Image

    data = value.get("bytes") if isinstance(value, dict) else None
    if not data:
        raise EpisodeError(f"camera '{camera}' frame {t} holds no image bytes")
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


class LerobotEpisode:
    """One episode of a LeRobot v3.0 dataset; use as a context manager."""

    def __init__(
        self,
        ref: EpisodeRef,
        instruction: str | None = None,
        rename: Mapping[str, str] | None = None,
    ):
        _needs_extra()
        self.ref, self.instruction = ref, instruction
        self.root = ref.path.parents[2]  # data/chunk-XXX/file-YYY.parquet
        try:
            self.dataset_info, rows, self.task_names = _meta(self.root)
        except LayoutError as e:
            raise EpisodeError(str(e)) from e
        self.index = int(ref.item)
        self.row = rows[self.index]
        self.fps = float(self.dataset_info["fps"])
        features = self.dataset_info.get("features", {})
        own = {
            key[len(IMAGE_PREFIX) :]: key
            for key, ft in features.items()
            if key.startswith(IMAGE_PREFIX) and ft.get("dtype") in ("video", "image")
        }
        by_set = set_names(own, KNOWN_CAMERAS, rename or {})
        self._features = {name: own[by_set[name]] for name in canonical_order(by_set)}
        self._table = None
        self._videos: dict[str, EpisodeVideo] = {}

    def __enter__(self) -> LerobotEpisode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for video in self._videos.values():
            video.close()
        self._videos.clear()

    def _rows(self):
        """This episode's rows of its data file, in frame order."""
        if self._table is None:
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(self.ref.path, filters=[("episode_index", "=", self.index)])
            except Exception as e:  # several pyarrow classes; all mean the file is unusable
                raise EpisodeError(f"data file unreadable ({type(e).__name__}: {e})") from e
            if "frame_index" in table.column_names:
                table = table.take(pc.sort_indices(table, [("frame_index", "ascending")]))
            self._table = table
        return self._table

    def _matrix(self, column: str, what: str) -> np.ndarray | None:
        table = self._rows()
        if column not in table.column_names:
            return None
        values = table.column(column).to_pylist()
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise EpisodeError(f"{what} column '{column}' is not numeric ({e})") from e
        return check_matrix(array.reshape(len(values), -1), what)

    def present_cameras(self) -> tuple[str, ...]:
        return tuple(self._features)

    def info(self) -> EpisodeInfo:
        actions = self._matrix("action", "action")
        if actions is None:
            raise EpisodeError("no 'action' column in the data file")
        steps = len(actions)
        if steps == 0:
            raise EpisodeError("action has no rows (empty episode)")
        if int(self.row["length"]) != steps:
            raise EpisodeError(
                f"meta/episodes says {self.row['length']} frames, the data has {steps}"
            )
        proprio = self._matrix("observation.state", "proprio")
        cameras = self.present_cameras()
        if not cameras:
            raise EpisodeError("no camera images (no observation.images.* feature)")
        return EpisodeInfo(steps, actions, proprio, cameras, self._instructions(), [])

    def _instructions(self) -> list[str]:
        """The episode's tasks: those of its frames' task_index, in order of first use."""
        table = self._rows()
        if "task_index" in table.column_names:
            order = dict.fromkeys(int(i) for i in table.column("task_index").to_pylist())
            texts = [self.task_names[i] for i in order if 0 <= i < len(self.task_names)]
        else:
            texts = [str(t) for t in self.row.get("tasks", [])]
        texts = [t for t in texts if t.strip()] or ([self.instruction] if self.instruction else [])
        longest = max(map(len, texts), default=0)
        if longest > MAX_INSTRUCTION_CHARS:
            raise EpisodeError(
                f"an instruction has {longest} characters, "
                f"over the limit of {MAX_INSTRUCTION_CHARS}"
            )
        return texts

    def check_cameras(self, cameras: Sequence[str]) -> None:
        """Fail unless every chosen camera exists and holds a frame for every step.

        Video frames are checked from the metadata (the file, and its time span covering the
        episode), not decoded: seeking into a shared video costs more than the check is
        worth, and a frame that then fails to decode still skips the episode, saying why.
        """
        present = self.present_cameras()
        steps = len(self._rows())
        for camera in cameras:
            if camera not in present:
                raise EpisodeError(f"no camera '{camera}' (has {', '.join(present) or 'none'})")
            key = self._features[camera]
            if self.dataset_info["features"][key]["dtype"] == "image":
                self.frames(camera, 0, 1)
                self.frames(camera, steps - 1, steps)
                continue
            path, start = self._video_position(key)
            if not path.is_file():
                raise EpisodeError(f"camera '{camera}': video {path} is missing")
            end = self.row.get(f"videos/{key}/to_timestamp")
            if end is not None and float(end) - start < (steps - 0.5) / self.fps:
                raise EpisodeError(
                    f"camera '{camera}': its video spans {float(end) - start:.2f} s, "
                    f"short of {steps} frames at {self.fps:g} fps"
                )

    def frames(self, camera: str, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of one camera as RGB uint8 (stop - start, H, W, 3)."""
        key = self._features.get(camera)
        if key is None:
            raise EpisodeError(f"no camera '{camera}'")
        table = self._rows()
        if not 0 <= start < stop <= len(table):
            raise ValueError(f"frame range [{start}, {stop}) outside 0..{len(table)} for {camera}")
        if self.dataset_info["features"][key]["dtype"] == "image":
            cells = table.column(key).slice(start, stop - start).to_pylist()
            return np.stack([_image(c, camera, start + i) for i, c in enumerate(cells)])
        if "timestamp" in table.column_names:
            times = table.column("timestamp").slice(start, stop - start).to_pylist()
        else:
            times = [i / self.fps for i in range(start, stop)]
        return self._video(camera, key).read(times)

    def _video_position(self, key: str) -> tuple[Path, float]:
        """The shared video file of a feature and where this episode starts in it."""
        prefix = f"videos/{key}/"
        try:
            chunk = int(self.row[prefix + "chunk_index"])
            file = int(self.row[prefix + "file_index"])
            start = float(self.row[prefix + "from_timestamp"])
        except (KeyError, TypeError, ValueError) as e:
            raise EpisodeError(f"meta/episodes has no video position for {key} ({e})") from e
        path = self.root / self.dataset_info["video_path"].format(
            video_key=key, chunk_index=chunk, file_index=file
        )
        return path, start

    def _video(self, camera: str, key: str) -> EpisodeVideo:
        if camera not in self._videos:
            self._videos[camera] = EpisodeVideo(*self._video_position(key), self.fps)
        return self._videos[camera]


class LerobotLayout(InputLayout):
    """A LeRobot v3.0 dataset folder, marked by its meta/info.json."""

    name = "lerobot"
    known_cameras = KNOWN_CAMERAS
    episode_class = LerobotEpisode

    def detect(self, root: Path) -> bool:
        return (root / "meta" / "info.json").is_file()

    def list_episodes(self, root: Path) -> list[EpisodeRef]:
        """Every episode of a LeRobot v3.0 folder by episode index; its file is its data parquet."""
        _needs_extra()
        info, rows, _ = _meta(Path(root))
        refs = []
        for index in sorted(rows):
            row = rows[index]
            relative = info["data_path"].format(
                chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"])
            )
            refs.append(EpisodeRef(Path(root) / relative, f"episode_{index:06d}", str(index)))
        if not refs:
            raise LayoutError(f"{root}: the LeRobot dataset lists no episodes")
        return refs
