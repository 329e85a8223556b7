"""Tests for reading and validating episodes in the processed, RoboTwin and ALOHA layouts."""

import re

import h5py
import numpy as np
import pytest
import simplejpeg

from pipeline.generate.synthetic import GenerateConfig, generate, instructions, square_box
from pipeline.inputs.layout import EpisodeError, EpisodeRef, LayoutError
from pipeline.inputs.registry import detect_layout, input_layout

SMALL = (32, 48)
STEPS = 6


def make(folder, layout="processed", episodes=1, **kwargs):
    config = GenerateConfig(
        folder, layout=layout, episodes=episodes, steps=STEPS, image_size=SMALL, **kwargs
    )
    return generate(config)


def open_file(path, layout, instruction=None):
    """The reader of one episode file of a one-file-per-episode layout."""
    return input_layout(layout).open_episode(EpisodeRef(path, path.name), instruction)


def list_episodes(root, layout):
    return [ref.path for ref in input_layout(layout).list_episodes(root)]


def write_processed(path, **datasets):
    """A hand-made processed episode: valid defaults, overridden (or dropped with None) by name."""
    frames = np.full((STEPS, *SMALL, 3), 128, np.uint8)
    fields = {"action": np.zeros((STEPS, 14)), "head_camera_image": frames, **datasets}
    with h5py.File(path, "w") as f:
        for name, data in fields.items():
            if data is not None:
                f[name] = data
    return path


def assert_red(image, rows, cols):
    centre = image[rows, cols][2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert (centre[:, 0] > 200).all() and (centre[:, 1:] < 60).all(), centre.mean(axis=0)


@pytest.mark.parametrize("layout", ["processed", "robotwin", "aloha"])
def test_detect_and_list_each_layout(tmp_path, layout):
    paths = make(tmp_path, layout, episodes=3)
    assert detect_layout(tmp_path) == layout
    assert list_episodes(tmp_path, layout) == paths


def test_list_sorted_by_relative_path_and_recursive(tmp_path):
    for name in ("b/episode_0.hdf5", "a/episode_1.hdf5", "episode_10.hdf5", "episode_2.hdf5"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        write_processed(tmp_path / name)
    names = [p.relative_to(tmp_path).as_posix() for p in list_episodes(tmp_path, "processed")]
    assert names == ["a/episode_1.hdf5", "b/episode_0.hdf5", "episode_10.hdf5", "episode_2.hdf5"]


def test_detect_skips_unreadable_files(tmp_path):
    (tmp_path / "0_broken.hdf5").write_text("not hdf5")
    make(tmp_path, "aloha")
    assert detect_layout(tmp_path) == "aloha"


def test_folder_errors(tmp_path):
    with pytest.raises(LayoutError, match="No \\*.hdf5 episodes"):
        detect_layout(tmp_path)
    with pytest.raises(LayoutError, match="No \\*.hdf5 episodes"):
        list_episodes(tmp_path, "processed")
    with pytest.raises(LayoutError, match="does not exist"):
        detect_layout(tmp_path / "missing")
    with pytest.raises(LayoutError, match="Unknown layout"):
        list_episodes(tmp_path, "rlds")
    (tmp_path / "notes.hdf5").write_text("text")
    with pytest.raises(LayoutError, match="Could not recognise"):
        detect_layout(tmp_path)


def test_robotwin_data_folder_passed_directly(tmp_path):
    make(tmp_path, "robotwin")
    with pytest.raises(LayoutError, match="data/ and instructions/"):
        detect_layout(tmp_path / "data")


def test_robotwin_red_stays_red(tmp_path):
    (path,) = make(tmp_path, "robotwin")
    with open_file(path, "robotwin") as episode:
        episode.check_cameras(["head", "right_wrist"])
        frames = episode.frames("right_wrist", 2, 5)
    assert frames.shape == (3, *SMALL, 3) and frames.dtype == np.uint8
    for i, t in enumerate(range(2, 5)):
        assert_red(frames[i], *square_box("right_wrist", t, STEPS, SMALL))


def test_robotwin_instructions_pair_by_file_index(tmp_path):
    make(tmp_path, "robotwin", episodes=12)
    for i in (0, 1, 5):
        (tmp_path / "data" / f"episode{i}.hdf5").unlink()
    (tmp_path / "instructions" / "episode7.json").unlink()
    paths = list_episodes(tmp_path, "robotwin")
    indices = [int(re.search(r"\d+", p.stem).group()) for p in paths]
    assert indices != list(range(len(paths)))  # positions no longer match indices
    for path, index in zip(paths, indices, strict=True):
        with open_file(path, "robotwin") as episode:
            info = episode.info()
        expected = instructions(index) if index != 7 else {"seen": [], "unseen": []}
        assert (info.instructions, info.unseen) == (expected["seen"], expected["unseen"])


def test_robotwin_malformed_instructions(tmp_path):
    (path,) = make(tmp_path, "robotwin")
    (tmp_path / "instructions" / "episode0.json").write_text("{seen: oops")
    with (
        open_file(path, "robotwin") as episode,
        pytest.raises(EpisodeError, match="not readable JSON"),
    ):
        episode.info()


def test_processed_info(tmp_path):
    (path,) = make(tmp_path, cameras=("head", "right_wrist"))
    with open_file(path, "processed") as episode:
        info = episode.info()
    assert info.steps == STEPS and info.actions.shape == (STEPS, 14)
    assert info.actions.dtype == np.float32 and info.proprio is None
    assert info.cameras == ("head", "right_wrist")
    assert info.instructions[0] == "pick up the red block 0"


def test_processed_scalar_and_missing_instructions(tmp_path):
    path = write_processed(tmp_path / "e.hdf5")
    with h5py.File(path, "a") as f:
        f.create_dataset("seen", data="stack the cups", dtype=h5py.string_dtype("utf-8"))
    with open_file(path, "processed") as episode:
        info = episode.info()
    assert info.instructions == ["stack the cups"] and info.unseen == []


@pytest.mark.parametrize("storage", ["raw", "padded", "bytes", "vlen"])
def test_aloha_raw_and_jpeg(tmp_path, storage):
    (path,) = make(tmp_path, "aloha", aloha_jpeg=storage == "padded")
    if storage in ("bytes", "vlen"):
        # Re-store the same images as one JPEG per row in the other encodings seen in the wild.
        with h5py.File(path, "a") as f:
            name = "observations/images/cam_low"
            jpegs = [simplejpeg.encode_jpeg(im, colorspace="RGB") for im in f[name][()]]
            del f[name]
            if storage == "bytes":
                f[name] = np.array(jpegs, dtype=f"S{max(map(len, jpegs))}")
            else:
                data = f.create_dataset(name, (STEPS,), dtype=h5py.vlen_dtype(np.uint8))
                for i, jpeg in enumerate(jpegs):
                    data[i] = np.frombuffer(jpeg, np.uint8)
    with open_file(path, "aloha", instruction="fold the towel") as episode:
        info = episode.info()
        episode.check_cameras(["low"])
        frames = episode.frames("low", 1, 4)
    assert info.instructions == ["fold the towel"]
    assert info.proprio.shape == (STEPS, 14) and info.proprio.dtype == np.float32
    assert frames.shape == (3, *SMALL, 3)
    assert_red(frames[1], *square_box("low", 2, STEPS, SMALL))


def test_aloha_without_instruction(tmp_path):
    (path,) = make(tmp_path, "aloha")
    with open_file(path, "aloha") as episode:
        assert episode.info().instructions == []


def test_frames_raw_slice(tmp_path):
    (path,) = make(tmp_path)
    with open_file(path, "processed") as episode:
        frames = episode.frames("low", 0, STEPS)
        with pytest.raises(ValueError):
            episode.frames("low", 3, STEPS + 1)
    assert frames.shape == (STEPS, *SMALL, 3)
    assert (frames[4][square_box("low", 4, STEPS, SMALL)] == (255, 0, 0)).all()


@pytest.mark.parametrize(
    "datasets, message",
    [
        ({"action": None}, "no action dataset 'action'"),
        ({"action": np.full((STEPS, 14), np.nan)}, "non-finite"),
        ({"action": np.zeros(STEPS)}, "2-D"),
        ({"action": np.zeros((STEPS - 1, 14))}, f"action has {STEPS - 1} rows but head has"),
        ({"head_camera_image": np.zeros((STEPS, *SMALL, 3))}, "head frames are float64"),
        ({"head_camera_image": np.zeros((STEPS, *SMALL), np.uint8)}, "expected \\(T, H, W, 3\\)"),
        ({"head_camera_image": None}, "no camera images"),
    ],
)
def test_bad_episode(tmp_path, datasets, message):
    path = write_processed(tmp_path / "e.hdf5", **datasets)
    with open_file(path, "processed") as episode, pytest.raises(EpisodeError, match=message):
        episode.info()


def test_length_mismatch_message(tmp_path):
    path = write_processed(tmp_path / "e.hdf5", action=np.zeros((180, 14)))
    with h5py.File(path, "a") as f:
        del f["head_camera_image"]
        f["head_camera_image"] = np.zeros((183, 16, 16, 3), np.uint8)
    with open_file(path, "processed") as episode, pytest.raises(EpisodeError) as error:
        episode.info()
    assert str(error.value) == "action has 180 rows but head has 183 frames"


def test_aloha_proprio_mismatch(tmp_path):
    (path,) = make(tmp_path, "aloha")
    with h5py.File(path, "a") as f:
        del f["observations/qpos"]
        f["observations/qpos"] = np.zeros((STEPS + 2, 14))
    with open_file(path, "aloha") as episode, pytest.raises(EpisodeError, match="proprio has"):
        episode.info()


def test_unreadable_files(tmp_path):
    (path,) = make(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EpisodeError, match="not a readable HDF5 file"):
        open_file(path, "processed")
    text = tmp_path / "notes.hdf5"
    text.write_text("hello")
    with pytest.raises(EpisodeError, match="not a readable HDF5 file"):
        open_file(text, "processed")


def test_missing_chosen_camera(tmp_path):
    (path,) = make(tmp_path, "robotwin", cameras=("head", "left_wrist"))
    with open_file(path, "robotwin") as episode, pytest.raises(EpisodeError) as error:
        episode.check_cameras(["head", "low"])
    assert str(error.value) == "no camera 'low' (has head, left_wrist)"


def test_corrupt_jpeg_names_camera_and_frame(tmp_path):
    (path,) = make(tmp_path, "robotwin")
    with h5py.File(path, "a") as f:
        rgb = f["observation/head_camera/rgb"]
        rgb[STEPS - 1] = b"\xff\xd8garbage"
    with open_file(path, "robotwin") as episode:
        episode.info()  # cheap: does not decode frames
        with pytest.raises(EpisodeError, match=f"camera 'head' frame {STEPS - 1} is not a valid"):
            episode.check_cameras(["head"])


def test_symlinked_subfolders_are_followed_once_and_loops_end(tmp_path, deadline):
    root = tmp_path / "in"
    make(root / "task0", episodes=1)
    make(tmp_path / "elsewhere" / "task1", episodes=2)
    (root / "task1").symlink_to(tmp_path / "elsewhere" / "task1", target_is_directory=True)
    (root / "again").symlink_to(tmp_path / "elsewhere" / "task1", target_is_directory=True)
    (root / "task0" / "loop").symlink_to(root, target_is_directory=True)
    names = [p.relative_to(root).as_posix() for p in list_episodes(root, "processed")]
    assert names == ["again/episode_0.hdf5", "again/episode_1.hdf5", "task0/episode_0.hdf5"]
    assert detect_layout(root) == "processed"
