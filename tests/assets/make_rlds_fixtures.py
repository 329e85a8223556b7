"""Write the tiny RLDS sets under tests/assets/rlds/ with tensorflow-datasets' own builder.

Run once, in a throwaway venv (TensorFlow is never a dependency of vla-shards):

    python3 -m venv /tmp/tfds-venv
    /tmp/tfds-venv/bin/pip install tensorflow-cpu tensorflow-datasets
    /tmp/tfds-venv/bin/python tests/assets/make_rlds_fixtures.py tests/assets/rlds

(written with tensorflow-cpu 2.21.0, tensorflow-datasets 4.9.10, array_record 0.8.6).
`... make_rlds_fixtures.py OUT --bench EPISODES STEPS SIDE` writes only a larger LIBERO-style
set (`libero_bench`, no .npz), for bench/convert_rlds.py. Sets:
- `libero_tiny_no_noops`: OpenVLA-OFT's LIBERO features (`image`, `wrist_image` JPEGs,
  8-dim `state`, 7-dim `joint_state`, 7-dim `action`, `language_instruction`), train split
  in two record files.
- `aloha_tiny`: OFT's ALOHA features (`image`, `left_wrist_image`, `right_wrist_image`,
  14-dim `state` and `action`), train and val splits.
- `oxe_tiny`: Open X-Embodiment names as RT-1's set has them (`observation/image` PNG,
  `observation/natural_language_instruction`, an action dict `world_vector`,
  `rotation_delta`, `gripper_closedness_action`, `terminate_episode`), no state.
- `libero_tiny_array_record`: the LIBERO set written as ArrayRecord.

Beside each set, `<name>.npz` holds what TFDS reads back from it, per episode (keyed by
`episode_metadata/file_path`): split, actions, state, instructions, and TFDS's decoded frames
of the first and last step of each camera. The ArrayRecord set holds the LIBERO set's
episodes (TFDS reads ArrayRecord only through `as_data_source`), so it has no file of its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

SIDE = 64  # frame side; --bench sets another
NOISE = 0.0  # pixel noise; --bench adds some, as a camera has, so JPEG costs what it would
TASKS = ["put the bowl on the plate", "open the top drawer", "stack the red cup"]


def frame(episode: int, step: int, camera: int) -> np.ndarray:
    """A smooth, colourful frame (JPEG keeps it well; a red/blue swap would show)."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE
    noise = np.random.default_rng([episode, step, camera]).normal(0, NOISE, (SIDE, SIDE))
    r = 255 * x + noise
    g = 255 * (0.5 + 0.5 * np.sin(6 * y + step * 0.4 + camera))
    b = np.full_like(x, 40.0 + 60 * episode + 30 * camera)
    return np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)


def episode_steps(episode: int) -> int:
    return 5 + 2 * episode


def _tensor(shape, dtype=np.float32):
    return tfds.features.Tensor(shape=shape, dtype=dtype)


def _flags(steps: int, t: int) -> dict:
    return {"is_first": t == 0, "is_last": t == steps - 1, "is_terminal": t == steps - 1}


def _scalar_features() -> dict:
    return {
        "discount": tfds.features.Scalar(dtype=np.float32),
        "reward": tfds.features.Scalar(dtype=np.float32),
        "is_first": tfds.features.Scalar(dtype=np.bool_),
        "is_last": tfds.features.Scalar(dtype=np.bool_),
        "is_terminal": tfds.features.Scalar(dtype=np.bool_),
    }


def _image(fmt: str = "jpeg"):
    return tfds.features.Image(shape=(SIDE, SIDE, 3), dtype=np.uint8, encoding_format=fmt)


class LiberoTinyNoNoops(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        steps = tfds.features.Dataset(
            {
                "observation": {
                    "image": _image(),
                    "wrist_image": _image(),
                    "state": _tensor((8,)),
                    "joint_state": _tensor((7,)),
                },
                "action": _tensor((7,)),
                **_scalar_features(),
                "language_instruction": tfds.features.Text(),
            }
        )
        features = {"steps": steps, "episode_metadata": {"file_path": tfds.features.Text()}}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(range(self.EPISODES))}

    EPISODES, STEPS = 3, None  # None: episode_steps(i)

    def _generate_examples(self, indices):
        for i in indices:
            rng = np.random.default_rng(i)
            n = self.STEPS or episode_steps(i)
            steps = [
                {
                    "observation": {
                        "image": frame(i, t, 0),
                        "wrist_image": frame(i, t, 1),
                        "state": rng.normal(size=8).astype(np.float32),
                        "joint_state": rng.normal(size=7).astype(np.float32),
                    },
                    "action": rng.uniform(-1, 1, size=7).astype(np.float32),
                    "discount": 1.0,
                    "reward": float(t == n - 1),
                    **_flags(n, t),
                    "language_instruction": TASKS[i % len(TASKS)],
                }
                for t in range(n)
            ]
            path = f"/data/libero/demo_{i}.hdf5"
            yield path, {"steps": steps, "episode_metadata": {"file_path": path}}


class LiberoTinyArrayRecord(LiberoTinyNoNoops):
    pass


class LiberoBench(LiberoTinyNoNoops):
    pass


class AlohaTiny(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        steps = tfds.features.Dataset(
            {
                "observation": {
                    "image": _image(),
                    "left_wrist_image": _image(),
                    "right_wrist_image": _image(),
                    "state": _tensor((14,)),
                },
                "action": _tensor((14,)),
                **_scalar_features(),
                "language_instruction": tfds.features.Text(),
            }
        )
        features = {"steps": steps, "episode_metadata": {"file_path": tfds.features.Text()}}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(range(3)),
            "val": self._generate_examples(range(3, 4)),
        }

    def _generate_examples(self, indices):
        for i in indices:
            rng = np.random.default_rng(100 + i)
            n = episode_steps(i % 3)
            steps = [
                {
                    "observation": {
                        "image": frame(i, t, 0),
                        "left_wrist_image": frame(i, t, 1),
                        "right_wrist_image": frame(i, t, 2),
                        "state": rng.normal(size=14).astype(np.float32),
                    },
                    "action": rng.normal(size=14).astype(np.float32),
                    "discount": 1.0,
                    "reward": 0.0,
                    **_flags(n, t),
                    "language_instruction": "fold the towel",
                }
                for t in range(n)
            ]
            path = f"/data/aloha/episode_{i}.hdf5"
            yield path, {"steps": steps, "episode_metadata": {"file_path": path}}


class OxeTiny(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("0.1.0")

    def _info(self):
        steps = tfds.features.Dataset(
            {
                "observation": {
                    "image": _image("png"),
                    "natural_language_instruction": tfds.features.Text(),
                    "base_pose_tool_reached": _tensor((7,)),
                },
                "action": {
                    "world_vector": _tensor((3,)),
                    "rotation_delta": _tensor((3,)),
                    "gripper_closedness_action": _tensor((1,)),
                    "terminate_episode": _tensor((3,), np.int32),
                },
                **_scalar_features(),
            }
        )
        features = tfds.features.FeaturesDict({"steps": steps})
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(range(2))}

    def _generate_examples(self, indices):
        for i in indices:
            rng = np.random.default_rng(200 + i)
            n = episode_steps(i)
            steps = [
                {
                    "observation": {
                        "image": frame(i, t, 0),
                        "natural_language_instruction": TASKS[i % len(TASKS)],
                        "base_pose_tool_reached": rng.normal(size=7).astype(np.float32),
                    },
                    "action": {
                        "world_vector": rng.normal(size=3).astype(np.float32),
                        "rotation_delta": rng.normal(size=3).astype(np.float32),
                        "gripper_closedness_action": rng.uniform(-1, 1, 1).astype(np.float32),
                        "terminate_episode": np.array([0, 1, 0], np.int32),
                    },
                    "discount": 1.0,
                    "reward": 0.0,
                    **_flags(n, t),
                }
                for t in range(n)
            ]
            yield f"episode_{i}", {"steps": steps}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stack(steps: list) -> dict:
    """Per-step dicts (nested) -> one dict of arrays stacked over the steps."""
    return {
        k: _stack([s[k] for s in steps]) if isinstance(v, dict) else np.stack([s[k] for s in steps])
        for k, v in steps[0].items()
    }


def record(builder: tfds.core.DatasetBuilder, out: Path) -> None:
    """What TFDS itself reads back, per episode, into `<name>.npz` beside the set."""
    arrays = {}
    for split in builder.info.splits:
        for n, episode in enumerate(tfds.as_numpy(builder.as_dataset(split=split))):
            steps = _stack(list(episode["steps"]))  # a nested dataset: one dict per step
            obs = steps["observation"]
            meta = episode.get("episode_metadata", {})
            key = _text(meta["file_path"]) if "file_path" in meta else f"{split}/{n}"
            action = steps["action"]
            if isinstance(action, dict):
                parts = ("world_vector", "rotation_delta", "gripper_closedness_action")
                action = np.concatenate([action[p] for p in parts], axis=1)
            arrays[f"{key}|split"] = np.array(split)
            arrays[f"{key}|action"] = action
            if "state" in obs:
                arrays[f"{key}|state"] = obs["state"]
            texts = steps.get("language_instruction", obs.get("natural_language_instruction"))
            arrays[f"{key}|instruction"] = np.array([_text(t) for t in texts])
            for camera in ("image", "wrist_image", "left_wrist_image", "right_wrist_image"):
                if camera in obs:
                    arrays[f"{key}|{camera}"] = obs[camera][[0, -1]]
    np.savez_compressed(out / f"{builder.name}.npz", **arrays)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sets = [
        (LiberoTinyNoNoops, "tfrecord", 2),
        (AlohaTiny, "tfrecord", None),
        (OxeTiny, "tfrecord", None),
        (LiberoTinyArrayRecord, "array_record", None),
    ]
    for cls, file_format, shards in sets:
        builder = cls(data_dir=str(out), file_format=file_format)
        config = tfds.download.DownloadConfig(num_shards=shards)
        builder.download_and_prepare(download_config=config)
        if file_format == "tfrecord":
            record(builder, out)
        print(f"wrote {builder.data_dir}")


def bench(out: Path, episodes: int, steps: int, side: int) -> None:
    global SIDE, NOISE
    SIDE, NOISE = side, 4.0
    LiberoBench.EPISODES, LiberoBench.STEPS = episodes, steps
    LiberoBench(data_dir=str(out)).download_and_prepare()
    print(f"wrote {out / 'libero_bench'}")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[2] == "--bench":
        bench(Path(sys.argv[1]), *(int(a) for a in sys.argv[3:]))
    else:
        main(Path(sys.argv[1]))
