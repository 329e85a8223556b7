"""Every input layout the converter reads, listed once, and which of them a folder holds.

A new layout is one module implementing `layout.InputLayout` and one entry in INPUTS.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.inputs.aloha import AlohaLayout
from pipeline.inputs.hdf5_layout import HDF5Layout, claim_folder
from pipeline.inputs.layout import InputLayout, LayoutError
from pipeline.inputs.lerobot import LerobotLayout
from pipeline.inputs.libero import LiberoLayout
from pipeline.inputs.processed import ProcessedLayout
from pipeline.inputs.robomimic import RobomimicLayout
from pipeline.inputs.robotwin import RobotwinLayout

# The first three keep one episode per HDF5 file, LIBERO and robomimic many demos per
# file, LeRobot a folder of parquet and video files.
INPUTS: tuple[InputLayout, ...] = (
    ProcessedLayout(),
    RobotwinLayout(),
    AlohaLayout(),
    LiberoLayout(),
    RobomimicLayout(),
    LerobotLayout(),
)
LAYOUTS = tuple(layout.name for layout in INPUTS)  # the `--layout` choices


def input_layout(name: str) -> InputLayout:
    """The layout called `name`."""
    for layout in INPUTS:
        if layout.name == name:
            return layout
    raise LayoutError(f"Unknown layout {name!r}; use one of {', '.join(LAYOUTS)}.")


def detect_layout(root: Path) -> str:
    """The name of the layout of the episodes in `root`: the first layout whose mark the
    folder bears, else the HDF5 layout that claims its first recognisable .hdf5 file."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"Episode folder {root} does not exist.")
    for layout in INPUTS:
        if layout.detect(root):
            return layout.name
    claimed = claim_folder(root, [layout for layout in INPUTS if isinstance(layout, HDF5Layout)])
    if claimed is not None:
        return claimed.name
    raise LayoutError(
        f"Could not recognise the episodes in {root} as any of {', '.join(LAYOUTS)}; "
        "pass --layout or check the files are readable HDF5 episodes."
    )
