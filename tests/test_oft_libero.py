"""LIBERO's actions as OpenVLA-OFT trains on them: its no-op rule and its gripper convention."""

from __future__ import annotations

import numpy as np

from pipeline.oft_libero import noop_steps, oft_gripper


def _actions(rows):
    return np.array(rows, dtype=np.float32)


def test_noops_are_still_steps_whose_gripper_repeats_the_last_kept_one():
    still = [0.0] * 6
    move = [0.1, 0, 0, 0, 0, 0]
    actions = _actions(
        [
            still + [-1],  # 0: first step, still: dropped whatever the gripper
            move + [-1],  # 1: moves: kept
            still + [-1],  # 2: still, same gripper as 1: dropped
            still + [1],  # 3: still but the gripper closes: kept
            still + [1],  # 4: same as the last kept (3): dropped
            [5e-5] + [0] * 5 + [1],  # 5: norm 5e-5 < 1e-4, same gripper: dropped
            [2e-4] + [0] * 5 + [1],  # 6: norm above the threshold: kept
            still + [-1],  # 7: gripper opens: kept
        ]
    )
    assert noop_steps(actions).tolist() == [True, False, True, False, True, True, False, False]


def test_the_last_kept_step_not_the_previous_row_sets_the_gripper():
    still = [0.0] * 6
    # 1 is dropped; 2 is compared with 0 (gripper -1), not with 1, so it is kept.
    actions = _actions([[0.3] + [0] * 5 + [-1], still + [-1], still + [0.5]])
    assert noop_steps(actions).tolist() == [False, True, False]


def test_gripper_is_clipped_to_0_1_and_inverted_and_nothing_else_changes():
    actions = _actions([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, -1.0], [1, 2, 3, 4, 5, 6, 1.0],
                        [0, 0, 0, 0, 0, 0, 0.25]])  # fmt: skip
    out = oft_gripper(actions)
    assert out[:, -1].tolist() == [1.0, 0.0, 0.75]  # -1 open -> 1, +1 close -> 0
    np.testing.assert_array_equal(out[:, :6], actions[:, :6])
    assert actions[0, -1] == -1.0  # the input is not modified
