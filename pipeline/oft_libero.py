"""LIBERO as OpenVLA-OFT trains on it: no-op steps dropped, the gripper clipped and inverted.

OFT's LIBERO sets (`*_no_noops`) come from its regenerate_libero_dataset.py, which skips every
step whose action is a no-op: translation and rotation (all but the last dimension) of norm
below 1e-4 and, after the first kept step, the same gripper command as the last kept action
(so a robot standing still while it opens or closes its gripper is kept). Its RLDS reader
then clips LIBERO's gripper command (-1 open .. +1 close) to [0, 1] and inverts it (1 - g),
so 1 means open and 0 closed; its LIBERO evaluation maps the prediction back. Pure numpy.
"""

from __future__ import annotations

import numpy as np

NOOP_THRESHOLD = 1e-4  # OFT's is_noop threshold on the norm of the first six dimensions
GRIPPER = -1  # the gripper command is LIBERO's last action dimension


def noop_steps(actions: np.ndarray, threshold: float = NOOP_THRESHOLD) -> np.ndarray:
    """(T, D) raw LIBERO actions -> (T,) bool, True for the steps OFT drops.

    Each step is compared with the last step kept, not the previous row: a run of no-ops
    after a gripper change is measured against the change.
    """
    actions = np.asarray(actions)
    if actions.ndim != 2 or actions.shape[1] < 2:
        raise ValueError(f"actions must be (T, D) with D >= 2, got {actions.shape}")
    still = np.linalg.norm(actions[:, :GRIPPER].astype(np.float64), axis=1) < threshold
    dropped = np.zeros(len(actions), dtype=bool)
    last_kept = None
    for t in range(len(actions)):
        same_gripper = last_kept is None or actions[t, GRIPPER] == actions[last_kept, GRIPPER]
        if still[t] and same_gripper:
            dropped[t] = True
        else:
            last_kept = t
    return dropped


def oft_gripper(actions: np.ndarray) -> np.ndarray:
    """(T, D) actions with LIBERO's gripper (-1 open, +1 close) -> the same with OFT's
    (clip to [0, 1], then 1 - g: 1 open, 0 closed); the other dimensions unchanged."""
    out = np.array(actions, dtype=np.float32, copy=True)
    out[:, GRIPPER] = 1.0 - np.clip(out[:, GRIPPER], 0.0, 1.0)
    return out
