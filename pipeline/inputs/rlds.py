"""RLDS sets written by tensorflow-datasets (OpenVLA-OFT, Open X-Embodiment) as an input layout.

The reading is pipeline/rlds/ (record framing, tf.train.Example, features.json, the set's
folders); this adapts it to `InputLayout`: references to list (one per record: its file
and byte offset, or ArrayRecord index) and an `EpisodeReader`. Needs the `rlds` extra
(protobuf, google-crc32c, array-record); never TensorFlow. Detecting a set reads JSON
only, so the other layouts work without the extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.inputs.cameras import canonical_order, set_names
from pipeline.inputs.layout import (
    NO_OPTIONS,
    EpisodeError,
    EpisodeInfo,
    EpisodeRef,
    InputLayout,
    InputOptions,
    LayoutError,
    check_instruction_lengths,
    check_matrix,
    require_extra,
)
from pipeline.rlds.errors import ExampleError, ImageError, RecordError, RldsError
from pipeline.rlds.folders import INFO_FILE, is_rlds_dir, locate, open_set, split_of
from pipeline.rlds.images import decode_image
from pipeline.rlds.keys import KeysError, episode_keys

# RLDS sets name cameras in steps/observation/ as OpenVLA-OFT's LIBERO and ALOHA sets do.
KNOWN_CAMERAS = {
    "image": "head",
    "wrist_image": "left_wrist",
    "left_wrist_image": "left_wrist",
    "right_wrist_image": "right_wrist",
}


def _needs_extra() -> None:
    require_extra("rlds", "RLDS sets", ("google.protobuf", "google_crc32c"))


class RldsEpisode:
    """One record of an RLDS set, read and checked when opened; use as a context manager."""

    def __init__(
        self,
        ref: EpisodeRef,
        instruction: str | None = None,
        rename: Mapping[str, str] | None = None,
    ):
        _needs_extra()
        from pipeline.rlds.dataset import read_episode

        self.instruction = instruction
        try:
            rset = open_set(ref.path.parent)
            self.keys = episode_keys(rset.features)
            self.split = split_of(rset, ref.path)
            self.record = read_episode(rset, ref.path, int(ref.item))
        except (RldsError, KeysError, RecordError, ExampleError) as e:
            raise EpisodeError(str(e)) from e
        own = self.keys.cameras
        by_set = set_names(own, KNOWN_CAMERAS, rename or {})
        self._cameras = {name: own[by_set[name]] for name in canonical_order(by_set)}
        self._encoded: dict[str, list[bytes]] = {}

    def __enter__(self) -> RldsEpisode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._encoded.clear()

    def _read(self, what):
        """Run a record read, its problems as this episode's error."""
        try:
            return what()
        except ExampleError as e:
            raise EpisodeError(str(e)) from e

    def _rows(self, keys: Sequence[str], what: str) -> np.ndarray:
        steps = self.record.steps
        parts = [self._read(lambda k=k: self.record.tensor(k)).reshape(steps, -1) for k in keys]
        return check_matrix(np.concatenate(parts, axis=1), what)

    def present_cameras(self) -> tuple[str, ...]:
        return tuple(self._cameras)

    def info(self) -> EpisodeInfo:
        steps = self.record.steps
        if steps == 0:
            raise EpisodeError("the record holds no steps (empty episode)")
        if (
            "steps/is_first" in self.record
            and not self._read(lambda: self.record.tensor("steps/is_first"))[0]
        ):
            raise EpisodeError("steps/is_first is false at step 0: not a whole episode")
        actions = self._rows(self.keys.action, "action")
        proprio = None
        if self.keys.proprio is not None and self.keys.proprio in self.record:
            proprio = self._rows([self.keys.proprio], "proprio")
        cameras = self.present_cameras()
        if not cameras:
            raise EpisodeError("no camera images (no Image feature in steps/observation)")
        source = {"split": self.split}
        if self.keys.file_path is not None and self.keys.file_path in self.record:
            source["file_path"] = self._read(lambda: self.record.texts(self.keys.file_path))[0]
        return EpisodeInfo(steps, actions, proprio, cameras, self._instructions(), [], source)

    def _instructions(self) -> list[str]:
        """The episode's one instruction: the same at every step (empty steps aside)."""
        key = self.keys.instruction
        texts = self._read(lambda: self.record.texts(key)) if key and key in self.record else []
        distinct = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
        if len(distinct) > 1:
            changed = next(t for t, text in enumerate(texts) if text.strip() == distinct[1])
            raise EpisodeError(
                f"{key} changes within the episode, to {distinct[1]!r} at step {changed}"
            )
        found = distinct or ([self.instruction] if self.instruction else [])
        check_instruction_lengths(found)
        return found

    def check_cameras(self, cameras: Sequence[str]) -> None:
        """Fail unless every chosen camera exists and its first and last frame decode."""
        present = self.present_cameras()
        steps = self.record.steps
        for camera in cameras:
            if camera not in present:
                raise EpisodeError(f"no camera '{camera}' (has {', '.join(present) or 'none'})")
            self.frames(camera, 0, 1)
            self.frames(camera, steps - 1, steps)

    def frames(self, camera: str, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of one camera as RGB uint8 (stop - start, H, W, 3)."""
        key = self._cameras.get(camera)
        if key is None:
            raise EpisodeError(f"no camera '{camera}'")
        if key not in self._encoded:
            self._encoded[key] = self._read(lambda: self.record.raw(key))
        encoded = self._encoded[key]
        if not 0 <= start < stop <= len(encoded):
            raise ValueError(
                f"frame range [{start}, {stop}) outside 0..{len(encoded)} for {camera}"
            )
        images = []
        for t in range(start, stop):
            try:
                images.append(decode_image(encoded[t]))
            except ImageError as e:
                raise EpisodeError(f"camera '{camera}' frame {t} {e}") from e
        if len({im.shape for im in images}) > 1:
            raise EpisodeError(f"camera '{camera}' frames {start}..{stop - 1} differ in size")
        return np.stack(images)


class RldsLayout(InputLayout):
    """A TFDS set: a version folder (its `dataset_info.json`), a dataset folder of versions
    or a TFDS data folder of datasets. One record is one episode."""

    name = "rlds"
    known_cameras = KNOWN_CAMERAS
    episode_class = RldsEpisode
    many_datasets = True
    keeps_splits = True

    def detect(self, root: Path) -> bool:
        return is_rlds_dir(root)

    def list_episodes(self, root: Path, options: InputOptions = NO_OPTIONS) -> list[EpisodeRef]:
        """Every train and val episode of the set under root (or of `options.dataset` of a
        data folder), sorted by manifest path: `<record file>#<record number>`."""
        _needs_extra()
        from pipeline.rlds.dataset import episodes

        root = Path(root)
        try:
            rset = locate(root, options.dataset)
            try:
                episode_keys(rset.features)  # a set whose action cannot be read stops here
            except KeysError as e:
                raise RldsError(f"{rset.folder}: {e}") from None
            refs = [
                EpisodeRef(
                    loc.path,
                    f"{loc.path.relative_to(root).as_posix()}#{loc.index}",
                    str(loc.position),
                )
                for loc in episodes(rset)
            ]
        except RldsError as e:
            raise LayoutError(str(e)) from None
        if not refs:
            raise LayoutError(f"{rset.folder}: its record files hold no episodes")
        return sorted(refs, key=lambda r: r.relative)

    def dataset_name(self, root: Path, options: InputOptions = NO_OPTIONS) -> str:
        """The dataset's name: `--rlds-dataset`'s, else its folder's; a version folder
        (`libero_spatial_no_noops/1.0.0`) is named after the dataset holding it."""
        if options.dataset:
            return Path(options.dataset).name
        folder = Path(root).resolve()
        return folder.parent.name if (folder / INFO_FILE).is_file() else folder.name
