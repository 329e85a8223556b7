"""Tests for the synthetic episode generator: exact layouts, determinism, useful content."""

import io
import json

import h5py
import numpy as np
import pytest
from PIL import Image

from pipeline.generate.synthetic import GenerateConfig, generate, square_box

SMALL = (32, 48)


def test_processed_layout_matches_robotwin_preprocessing(tmp_path):
    paths = generate(GenerateConfig(tmp_path, episodes=2, steps=5))
    assert [p.name for p in paths] == ["episode_0.hdf5", "episode_1.hdf5"]
    with h5py.File(paths[1], "r") as f:
        for name in ("head_camera_image", "low_cam_image", "left_wrist_image", "right_wrist_image"):
            assert f[name].shape == (5, 256, 256, 3) and f[name].dtype == np.uint8
            assert f[name].chunks == (1, 256, 256, 3)
        assert f["action"].shape == (5, 14)
        assert h5py.check_string_dtype(f["seen"].dtype).encoding == "utf-8"
        assert f["seen"][0] == b"pick up the red block 1"
        assert f["unseen"].shape == (1,)


def test_robotwin_layout(tmp_path):
    paths = generate(GenerateConfig(tmp_path, layout="robotwin", episodes=3, steps=4))
    assert paths[2] == tmp_path / "data" / "episode2.hdf5"
    with h5py.File(paths[2], "r") as f:
        rgb = f["observation/front_camera/rgb"]
        assert rgb.shape == (4,) and rgb.dtype.kind == "S"
        assert rgb[0][:2] == b"\xff\xd8"  # JPEG start-of-image marker
        # Like cv2.imencode output, a decoder that assumes RGB (PIL) sees the red square as blue.
        pil = np.asarray(Image.open(io.BytesIO(rgb[1])).convert("RGB"))
        rows, cols = square_box("low", 1, 4, (240, 320), episode=2)
        assert tuple(np.median(pil[rows, cols].reshape(-1, 3), axis=0)) == pytest.approx(
            (0, 0, 255), abs=20
        )
        vector = f["joint_action/vector"][()]
        assert vector.shape == (4, 14)
        np.testing.assert_array_equal(f["joint_action/right_arm"][()], vector[:, 7:13])
        np.testing.assert_array_equal(f["joint_action/left_gripper"][()], vector[:, 6])
    text = json.loads((tmp_path / "instructions" / "episode2.json").read_text())
    assert set(text) == {"seen", "unseen"} and all("2" in s for s in text["seen"] + text["unseen"])


@pytest.mark.parametrize("jpeg", [False, True])
def test_aloha_layout(tmp_path, jpeg):
    config = GenerateConfig(
        tmp_path, layout="aloha", episodes=1, steps=6, image_size=SMALL, aloha_jpeg=jpeg
    )
    (path,) = generate(config)
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["sim"])
        high = f["observations/images/cam_high"]
        assert high.shape == ((6, *SMALL, 3) if not jpeg else (6, high.shape[1]))
        assert high.dtype == np.uint8
        for name in ("observations/qpos", "observations/qvel", "action"):
            assert f[name].shape == (6, 14)


def test_red_square_on_grey_moves_per_camera_and_time(tmp_path):
    config = GenerateConfig(
        tmp_path, episodes=1, steps=8, image_size=SMALL, cameras=("head", "low")
    )
    (path,) = generate(config)
    with h5py.File(path, "r") as f:
        head, low = f["head_camera_image"][()], f["low_cam_image"][()]
    rows, cols = square_box("head", 3, 8, SMALL)
    assert (head[3, rows, cols] == (255, 0, 0)).all()
    assert abs(int(np.median(head[3])) - 128) <= 6  # grey background with mild texture
    assert square_box("head", 0, 8, SMALL) != square_box("head", 7, 8, SMALL)
    assert square_box("head", 3, 8, SMALL) != square_box("low", 3, 8, SMALL)
    assert not np.array_equal(head[3], low[3])


def test_deterministic_and_episodes_differ(tmp_path):
    def read(folder):
        paths = generate(GenerateConfig(folder, episodes=2, steps=10, seed=7, image_size=SMALL))
        out = []
        for p in paths:
            with h5py.File(p, "r") as f:
                out.append((f["action"][()], f["head_camera_image"][()]))
        return out

    first, again = read(tmp_path / "a"), read(tmp_path / "b")
    for (a1, i1), (a2, i2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(i1, i2)
    actions0, actions1 = first[0][0], first[1][0]
    assert np.abs(actions0 - actions1).mean() > 0.1
    assert actions0.std(axis=0).min() > 0.05  # every dimension moves, so stats are non-trivial
    grippers = actions0[:, [6, 13]]
    assert grippers.min() >= -0.05 and grippers.max() <= 1.05


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layout": "lerobot"}, "Unknown layout"),
        ({"episodes": 0}, "at least 1"),
        ({"image_size": (8, 64)}, "at least 16"),
        ({"cameras": ("head", "top")}, "Cameras must be"),
        ({"cameras": ()}, "Cameras must be"),
        ({"aloha_jpeg": True}, "only to the aloha layout"),
    ],
)
def test_config_rejects_bad_values(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerateConfig(tmp_path, **kwargs)


def test_default_image_size_per_layout(tmp_path):
    assert GenerateConfig(tmp_path).image_size == (256, 256)
    assert GenerateConfig(tmp_path, layout="robotwin").image_size == (240, 320)
    assert GenerateConfig(tmp_path, layout="aloha").image_size == (480, 640)
