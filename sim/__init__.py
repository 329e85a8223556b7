"""The simulated world: gym-aloha tasks rendered headless, scripted policies, rollouts, records."""

import logging

from sim.headless import choose_backend, load_triton_first, require_extra

# Here, so that it happens before any module of the package imports mujoco or dm_control,
# both of which pick their OpenGL backend from MUJOCO_GL when they load.
require_extra()
load_triton_first()
choose_backend()
# dm_control and PyOpenGL report their backend choice at INFO; the choice is ours, made above.
for _name in ("absl", "OpenGL"):
    logging.getLogger(_name).setLevel(logging.WARNING)
