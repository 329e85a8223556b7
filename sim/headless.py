"""Choose MuJoCo's headless OpenGL backend (EGL, else OSMesa) before anything imports it."""

from __future__ import annotations

import ctypes.util
import os

from common.errors import UserError

# Debian packages that provide each backend's library.
PACKAGES = {"egl": "libegl1 libgl1-mesa-dri", "osmesa": "libosmesa6"}
_LIBRARIES = {"egl": "EGL", "osmesa": "OSMesa"}


class RenderingError(UserError):
    """No headless OpenGL library to render the simulator's cameras with."""


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
