"""LIBERO's layout (its scripts/create_dataset.py): demo files whose cameras are
`agentview_rgb`/`eye_in_hand_rgb`, with `ee_states` (position and axis-angle, 6) and
`gripper_states` (2), the task in the JSON of `/data`'s `problem_info` attribute, and frames
rendered upside down (robosuite's OpenGL convention, recorded in `macros_image_convention`).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from pipeline.inputs.demos import DemoEpisode, DemoLayout, is_demo_file, is_libero_file
from pipeline.inputs.hdf5_episode import strings
from pipeline.inputs.layout import EpisodeError


def task_from_file_name(path: Path) -> str:
    """LIBERO names files after their task: `KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5` ->
    `turn on the stove` (scene prefix and `_demo` dropped)."""
    stem = path.stem.removesuffix("_demo")
    words = stem.split("_")
    # The scene prefix is upper-case words (and the scene number), the task lower-case.
    while words and not words[0].islower():
        words.pop(0)
    return " ".join(words or stem.split("_"))


class LiberoEpisode(DemoEpisode):
    """One demo of a LIBERO file."""

    def _upside_down(self) -> bool:
        # Upside down unless the file says robosuite rendered them the OpenCV way.
        convention = self.file["data"].attrs.get("macros_image_convention", "opengl")
        if isinstance(convention, bytes):
            convention = convention.decode()
        return convention != "opencv"

    def _instructions(self) -> tuple[list[str], list[str]]:
        text = self.file["data"].attrs.get("problem_info")
        if text is not None:
            try:
                info = json.loads(text)
            except (TypeError, ValueError) as e:
                raise EpisodeError(f"problem_info of /data is not JSON ({e})") from e
            found = info.get("language_instruction") if isinstance(info, dict) else None
            if found:
                return strings(found, "language_instruction in problem_info"), []
        if self.instruction:
            return [self.instruction], []
        return [task_from_file_name(self.path)], []


class LiberoLayout(DemoLayout):
    name = "libero"
    episode_class = LiberoEpisode

    def claims(self, f: h5py.File) -> bool:
        return is_demo_file(f) and is_libero_file(f)
