"""robomimic's layout (its image datasets): demo files whose cameras are `agentview_image`/
`robot0_eye_in_hand_image`, with `robot0_eef_pos`, `robot0_eef_quat` (x, y, z, w) and
`robot0_gripper_qpos`; frames flipped upright when recorded, and no language of their own.
"""

from __future__ import annotations

import h5py

from pipeline.inputs.demos import DemoEpisode, DemoLayout, is_demo_file, is_libero_file


class RobomimicLayout(DemoLayout):
    name = "robomimic"
    needs_instruction = True
    episode_class = DemoEpisode  # upright frames; language only from --instruction

    def claims(self, f: h5py.File) -> bool:
        return is_demo_file(f) and not is_libero_file(f)
