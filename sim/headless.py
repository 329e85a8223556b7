"""Before MuJoCo loads: its headless OpenGL backend (EGL, else OSMesa), and the [sim] extra."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os

from common.errors import UserError

# Debian packages that provide each backend's library.
PACKAGES = {"egl": "libegl1 libgl1-mesa-dri", "osmesa": "libosmesa6"}
_LIBRARIES = {"egl": "EGL", "osmesa": "OSMesa"}
EXTRA = ("mujoco", "dm_control", "gym_aloha", "imageio_ffmpeg")  # what `[sim]` installs


class RenderingError(UserError):
    """No headless OpenGL library to render the simulator's cameras with."""


def require_extra() -> None:
    """A user error naming the extra to install, not an ImportError deep inside."""
    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"the simulator is not installed ({', '.join(missing)} missing): "
            "pip install 'vla-shards[sim]'"
        )


def load_triton_first() -> None:
    """Triton (torch's kernel compiler, where installed) and Mesa's EGL/OSMesa drivers each
    carry their own LLVM; Triton loaded after Mesa's kills the process with a segfault at
    import (transformers imports it on demand), while the other order works. So it loads
    here, before dm_control opens the GL library."""
    if importlib.util.find_spec("triton") is not None:
        importlib.import_module("triton")


def choose_backend() -> str:
    """MUJOCO_GL as the user set it, else the first headless backend whose library loads.

    Left unset, MuJoCo tries GLFW, which needs an X server: a machine without a display
    fails there, so a backend is always named before mujoco or dm_control is imported.
    """
    chosen = os.environ.get("MUJOCO_GL")
    if not chosen:
        found = [name for name, lib in _LIBRARIES.items() if ctypes.util.find_library(lib)]
        if not found:
            raise RenderingError(
                "no headless OpenGL library found for the simulator: install "
                f"{PACKAGES['egl']} (or {PACKAGES['osmesa']}), or set MUJOCO_GL"
            )
        chosen = found[0]
        os.environ["MUJOCO_GL"] = chosen
    # PyOpenGL must load the same platform's entry points as dm_control's context.
    if chosen in _LIBRARIES:
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen
