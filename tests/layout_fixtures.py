"""Tiny files laid out exactly as public tools write them: ACT's and ALOHA's recorders,
LIBERO's create_dataset.py and robomimic's datasets; and checks shared by their tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import simplejpeg

from pipeline.convert.encode import action_chunk
from shards.format import resize_square

SIZE = 32  # stored image side in these tests; sources are made at other sizes


def frames(steps: int, h: int, w: int, seed: int) -> np.ndarray:
    """(T, H, W, 3) smooth colour ramps: red grows down, green grows right, blue per seed and t.

    Nothing is symmetric, so a frame stored upside down or with channels swapped fails PSNR,
    and blue steps far between frames, so a frame from another time or episode fails too.
    """
    rows = np.linspace(20, 235, h)[:, None] * np.ones((1, w))
    cols = np.ones((h, 1)) * np.linspace(30, 200, w)[None, :]
    out = np.empty((steps, h, w, 3), np.uint8)
    for t in range(steps):
        out[t, ..., 0] = rows
        out[t, ..., 1] = cols
        out[t, ..., 2] = (40 + 101 * seed + 37 * t) % 256
    return out


def actions(steps: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(steps, dim)).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def expected_image(frame: np.ndarray) -> np.ndarray:
    return resize_square(np.ascontiguousarray(frame), SIZE)


def write_act_sim(path: Path, steps: int, seed: int, cameras=("top",)) -> dict:
    """ACT's record_sim_episodes.py: raw 480x640 frames (here small), `sim` True, qpos, action."""
    data = {
        "action": actions(steps, 14, seed),
        "qpos": actions(steps, 14, seed + 100),
        "images": {c: frames(steps, 24, 40, seed + i) for i, c in enumerate(cameras)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", rdcc_nbytes=1024**2 * 2) as root:
        root.attrs["sim"] = True
        obs = root.create_group("observations")
        image = obs.create_group("images")
        for cam, fr in data["images"].items():
            image.create_dataset(cam, data=fr, dtype="uint8", chunks=(1, *fr.shape[1:]))
        obs.create_dataset("qpos", data=data["qpos"])
        obs.create_dataset("qvel", data=np.zeros((steps, 14)))
        root.create_dataset("action", data=data["action"])
    return data


def write_aloha_compressed(path: Path, steps: int, seed: int, cameras=("cam_high",)) -> dict:
    """ALOHA's record_episodes.py with compress=True: cv2.imencode(quality 50) of the camera's
    RGB arrays (OpenCV reads them as BGR), zero-padded to the longest, `compress_len` beside."""
    images = {c: frames(steps, 24, 40, seed + i) for i, c in enumerate(cameras)}
    data = {"action": actions(steps, 14, seed), "qpos": actions(steps, 14, seed + 100)}
    data["images"] = images
    # simplejpeg with colorspace="BGR" writes the bytes cv2.imencode writes for the same array.
    encoded = {
        c: [simplejpeg.encode_jpeg(f, quality=50, colorspace="BGR") for f in fr]
        for c, fr in images.items()
    }
    compressed_len = np.array([[len(b) for b in encoded[c]] for c in cameras])
    padded_size = compressed_len.max()
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", rdcc_nbytes=1024**2 * 2) as root:
        root.attrs["sim"] = False
        root.attrs["compress"] = True
        obs = root.create_group("observations")
        image = obs.create_group("images")
        for cam in cameras:
            ds = image.create_dataset(
                cam, (steps, padded_size), dtype="uint8", chunks=(1, padded_size)
            )
            rows = np.zeros((steps, padded_size), np.uint8)
            for t, b in enumerate(encoded[cam]):
                rows[t, : len(b)] = np.frombuffer(b, np.uint8)
            ds[...] = rows
        obs.create_dataset("qpos", (steps, 14), "f4")[...] = data["qpos"]
        obs.create_dataset("qvel", (steps, 14), "f4")
        obs.create_dataset("effort", (steps, 14), "f4")
        root.create_dataset("action", (steps, 14), "f4")[...] = data["action"]
        root.create_dataset("base_action", (steps, 2), "f4")
        root.create_dataset("compress_len", (len(cameras), steps), "f4")[...] = compressed_len
    # The recorder creates these without a dtype: h5py's default, float32.
    data["action"] = data["action"].astype(np.float32)
    data["qpos"] = data["qpos"].astype(np.float32)
    return data


def write_libero(
    path: Path, demos: list[int], seed: int, instruction: str | None, size: int = 20
) -> dict:
    """LIBERO's scripts/create_dataset.py: /data attrs, demo_i groups, obs/*_rgb upside down."""
    out = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        grp = f.create_group("data")
        grp.attrs["env_name"] = "Libero_Kitchen_Tabletop_Manipulation"
        if instruction is not None:
            info = {"problem_name": "libero_kitchen_tabletop_manipulation",
                    "domain_name": "kitchen", "language_instruction": instruction}  # fmt: skip
            grp.attrs["problem_info"] = json.dumps(info)
        grp.attrs["macros_image_convention"] = "opengl"
        grp.attrs["bddl_file_name"] = "libero/bddl_files/libero_10/x.bddl"
        grp.attrs["env_args"] = json.dumps({"type": 1, "env_name": "x"})
        total = 0
        for i, steps in enumerate(demos):
            s = seed * 10 + i
            upright = {"agentview_rgb": frames(steps, size, size, s),
                       "eye_in_hand_rgb": frames(steps, size, size, s + 50)}  # fmt: skip
            ee = actions(steps, 6, s + 1)
            gripper = actions(steps, 2, s + 2)
            ep = grp.create_group(f"demo_{i}")
            obs = ep.create_group("obs")
            obs.create_dataset("gripper_states", data=gripper)
            obs.create_dataset("joint_states", data=actions(steps, 7, s + 3))
            obs.create_dataset("ee_states", data=ee)
            obs.create_dataset("ee_pos", data=ee[:, :3])
            obs.create_dataset("ee_ori", data=ee[:, 3:])
            for cam, fr in upright.items():
                # Rendered upside down; stored contiguous, as create_dataset.py leaves it.
                obs.create_dataset(cam, data=fr[:, ::-1, ::-1])
            act = actions(steps, 7, s)
            ep.create_dataset("actions", data=act)
            ep.create_dataset("states", data=np.zeros((steps, 9)))
            ep.create_dataset("robot_states", data=np.zeros((steps, 9)))
            ep.create_dataset("rewards", data=np.eye(1, steps, steps - 1, dtype=np.uint8)[0])
            ep.create_dataset("dones", data=np.eye(1, steps, steps - 1, dtype=np.uint8)[0])
            ep.attrs["num_samples"] = steps
            ep.attrs["model_file"] = "<mujoco/>"
            total += steps
            out[f"demo_{i}"] = {
                "action": act.astype(np.float32),
                "proprio": np.concatenate([ee, gripper], axis=1).astype(np.float32),
                "images": {
                    "head": upright["agentview_rgb"],
                    "left_wrist": upright["eye_in_hand_rgb"],
                },  # fmt: skip
            }
        grp.attrs["num_demos"] = len(demos)
        grp.attrs["total"] = total
    return out


def write_robomimic(path: Path, demos: list[int], seed: int) -> dict:
    """robomimic's image datasets: /data/demo_i with obs/agentview_image (upright), eef pose."""
    out = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        grp = f.create_group("data")
        grp.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        total = 0
        for i, steps in enumerate(demos):
            s = seed * 10 + i
            images = {"agentview_image": frames(steps, 20, 20, s),
                      "robot0_eye_in_hand_image": frames(steps, 20, 20, s + 50)}  # fmt: skip
            pos = actions(steps, 3, s + 1)
            quat = actions(steps, 4, s + 2)
            quat /= np.linalg.norm(quat, axis=1, keepdims=True)
            gripper = actions(steps, 2, s + 3)
            ep = grp.create_group(f"demo_{i}")
            for part in ("obs", "next_obs"):
                obs = ep.create_group(part)
                for cam, fr in images.items():
                    obs.create_dataset(cam, data=fr)
                obs.create_dataset("robot0_eef_pos", data=pos)
                obs.create_dataset("robot0_eef_quat", data=quat)
                obs.create_dataset("robot0_gripper_qpos", data=gripper)
                obs.create_dataset("object", data=np.zeros((steps, 10)))
            act = actions(steps, 7, s)
            ep.create_dataset("actions", data=act)
            ep.create_dataset("states", data=np.zeros((steps, 32)))
            ep.create_dataset("rewards", data=np.zeros(steps))
            ep.create_dataset("dones", data=np.zeros(steps, np.int64))
            ep.attrs["num_samples"] = steps
            total += steps
            out[f"demo_{i}"] = {
                "action": act.astype(np.float32),
                "pos": pos, "quat": quat, "gripper": gripper,
                "images": {"head": images["agentview_image"],
                           "left_wrist": images["robot0_eye_in_hand_image"]},
            }  # fmt: skip
        grp.attrs["total"] = total
        mask = f.create_group("mask")
        names = [f"demo_{i}".encode() for i in range(len(demos))]
        mask.create_dataset("train", data=np.array(names[1:] or names, dtype="S"))
        mask.create_dataset("valid", data=np.array(names[:1], dtype="S"))
    return out


def write_processed(path: Path, steps: int, seed: int, size: int) -> None:
    """RoboTwin's OpenVLA-OFT preprocessing output, with the same content as the writers above."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, s in (("head_camera_image", seed), ("left_wrist_image", seed + 50)):
            f.create_dataset(name, data=frames(steps, size, size, s), chunks=(1, size, size, 3))
        f["action"] = actions(steps, 7, seed).astype(np.float32)
        f.create_dataset("seen", data=["do the task"], dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("unseen", data=[], dtype=h5py.string_dtype("utf-8"))


def check_samples(
    samples: list[dict], sources: dict[str, dict], chunk: int, min_psnr: float = 35
) -> None:
    """Every sample against its source episode: chunks exact, proprio exact, frames PSNR."""
    assert samples
    for s in samples:
        src = sources[s["meta"]["episode"]]
        t = s["meta"]["t"]
        expected, valid = action_chunk(src["action"], t, chunk)
        np.testing.assert_array_equal(s["actions"], expected)
        assert s["meta"]["valid"] == valid
        if "proprio" in src:
            assert s["meta"]["proprio"] == [float(v) for v in src["proprio"][t]]
        assert s["meta"]["instructions"] == src["instructions"]
        for cam, fr in src["images"].items():
            truth = expected_image(fr[t])
            assert psnr(s["images"][cam], truth) > min_psnr, (cam, psnr(s["images"][cam], truth))
            # ... and far from the frame turned over or with red and blue swapped.
            assert psnr(s["images"][cam], expected_image(fr[t][::-1, ::-1])) < 25
            assert psnr(s["images"][cam], truth[..., ::-1]) < 25
            for other in (t - 1, t + 1):  # the neighbouring frames are far off too
                if 0 <= other < len(fr):
                    assert psnr(s["images"][cam], expected_image(fr[other])) < 25


def _write_av1(path: Path, video: list[np.ndarray], fps: int) -> None:
    """Frames into one mp4 as LeRobot's encoder settings make it (libsvtav1, yuv420p, g=2)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libsvtav1", rate=fps)
        stream.height, stream.width = video[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "2", "crf": "30"}
        for frame in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_lerobot_v3(
    root: Path,
    lengths: list[int],
    tasks: list[str],
    fps: int = 10,
    size: int = 32,
    wrist_as_image: bool = True,
) -> dict:
    """A LeRobot v3.0 folder as its writer lays one out: every episode in one data parquet
    file and one AV1 mp4 per video camera, episodes one after the other in it.
    `observation.images.cam_high` is a video; `observation.images.wrist` an image feature
    (PNG bytes in the parquet), or with `wrist_as_image=False` a video too."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    videos = ["observation.images.cam_high"]
    if not wrist_as_image:
        videos.append("observation.images.wrist")
    src, rows, episodes = {}, [], []
    video_frames: dict[str, list[np.ndarray]] = {key: [] for key in videos}
    start = 0
    for e, (steps, task) in enumerate(zip(lengths, tasks, strict=True)):
        act = actions(steps, 6, e).astype(np.float32)
        state = actions(steps, 6, e + 100).astype(np.float32)
        cams = {"observation.images.cam_high": frames(steps, size, size, e),
                "observation.images.wrist": frames(steps, size, size, e + 50)}  # fmt: skip
        for key in videos:
            video_frames[key] += list(cams[key])
        for t in range(steps):
            row = {
                "action": act[t].tolist(), "observation.state": state[t].tolist(),
                "timestamp": np.float32(t / fps), "frame_index": t, "episode_index": e,
                "index": start + t, "task_index": e,
            }  # fmt: skip
            if wrist_as_image:
                png = io.BytesIO()
                Image.fromarray(cams["observation.images.wrist"][t]).save(png, format="PNG")
                row["observation.images.wrist"] = {"bytes": png.getvalue(), "path": None}
            rows.append(row)
        episode = {
            "episode_index": e, "tasks": [task], "length": steps,
            "data/chunk_index": 0, "data/file_index": 0,
            "dataset_from_index": start, "dataset_to_index": start + steps,
        }  # fmt: skip
        for key in videos:
            episode[f"videos/{key}/chunk_index"] = 0
            episode[f"videos/{key}/file_index"] = 0
            episode[f"videos/{key}/from_timestamp"] = start / fps
            episode[f"videos/{key}/to_timestamp"] = (start + steps) / fps
        episode["meta/episodes/chunk_index"] = episode["meta/episodes/file_index"] = 0
        episodes.append(episode)
        src[f"episode_{e:06d}"] = {
            "action": act, "proprio": state, "instructions": [task],
            "images": {"head": cams["observation.images.cam_high"],
                       "wrist": cams["observation.images.wrist"]},
        }  # fmt: skip
        start += steps
    image = {"shape": [size, size, 3], "names": ["height", "width", "channels"]}
    video_info = {"video.fps": fps, "video.codec": "av1", "video.pix_fmt": "yuv420p"}
    features = {
        "action": {"dtype": "float32", "shape": [6], "names": None},
        "observation.state": {"dtype": "float32", "shape": [6], "names": None},
        **{key: {"dtype": "video", **image, "info": video_info} for key in videos},
        **({"observation.images.wrist": {"dtype": "image", **image}} if wrist_as_image else {}),
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {
        "codebase_version": "v3.0", "robot_type": "aloha", "total_episodes": len(lengths),
        "total_frames": start, "total_tasks": len(set(tasks)), "chunks_size": 1000,
        "data_files_size_in_mb": 100, "video_files_size_in_mb": 500, "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features,
    }  # fmt: skip
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    pd.DataFrame({"task_index": range(len(tasks))}, index=pd.Index(tasks, name="task")).to_parquet(
        root / "meta" / "tasks.parquet"
    )
    pd.DataFrame(episodes).to_parquet(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    (root / "data" / "chunk-000").mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, root / "data" / "chunk-000" / "file-000.parquet", compression="snappy")
    for key in videos:
        _write_av1(root / "videos" / key / "chunk-000" / "file-000.mp4", video_frames[key], fps)
    return src
