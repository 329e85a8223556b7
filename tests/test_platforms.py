"""OpenVLA-OFT's platform constants and the check that a run decodes the same under them."""

from __future__ import annotations

import pytest

from shards.platforms import (
    PLATFORMS,
    PlatformMismatch,
    decode_mismatch,
    mask_mismatch,
    matching_platforms,
    oft_platform,
    platform,
    platform_from_command_line,
)


def test_the_table_is_ofts_constants():
    # prismatic/vla/constants.py: NUM_ACTIONS_CHUNK, ACTION_DIM, PROPRIO_DIM, normalization;
    # materialize.py's masks: EEF_POS keeps the gripper raw, bimanual joints normalize all.
    got = {n: (p.chunk, p.action_dim, p.proprio_dim, p.normalization) for n, p in PLATFORMS.items()}
    assert got == {
        "libero": (8, 7, 8, "bounds_q99"),
        "aloha": (25, 14, 14, "bounds"),
        "bridge": (5, 7, 7, "bounds_q99"),
    }
    assert PLATFORMS["libero"].mask == [True] * 6 + [False]
    assert PLATFORMS["bridge"].mask == [True] * 6 + [False]
    assert PLATFORMS["aloha"].mask == [True] * 14


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["finetune.py", "--dataset_name", "aloha_towel"], "aloha"),
        (["run_libero_eval.py", "--task_suite_name", "libero_spatial"], "libero"),
        (["finetune.py", "--dataset_name", "bridge_orig"], "bridge"),
        (["finetune.py", "--run_root_dir", "LIBERO_runs", "--dataset_name", "aloha_x"], "libero"),
        (["finetune.py", "--dataset_name", "my_robot"], "libero"),  # OFT's default
    ],
)
def test_the_platform_comes_from_the_first_word_found_as_ofts_does(words, expected):
    assert platform_from_command_line(words).name == expected


def test_a_mismatch_names_each_value_oft_would_decode_differently():
    libero = platform("libero")
    assert decode_mismatch(libero, 8, 7, 8, "bounds_q99") is None
    assert decode_mismatch(libero, 8, 7, 0, "bounds_q99") is None  # no robot state: fits
    text = decode_mismatch(libero, 10, 7, 9, "bounds")
    assert text == (
        "chunk 10 (OFT's libero uses 8), 9 proprio dims (libero: 8), "
        "normalization bounds (libero: bounds_q99)"
    )
    assert "14 action dims (libero: 7)" in decode_mismatch(libero, 8, 14, 0, "bounds_q99")


def test_matching_platforms():
    assert [p.name for p in matching_platforms(8, 7, 8)] == ["libero"]
    assert [p.name for p in matching_platforms(25, 14, 0, "bounds")] == ["aloha"]
    assert matching_platforms(25, 14, 0, "bounds_q99") == []
    assert [p.name for p in matching_platforms(5, 7, 0)] == ["bridge"]
    assert matching_platforms(8, 14, 14) == []
    with pytest.raises(
        ValueError, match="unknown robot 'franka'; use one of libero, aloha, bridge"
    ):
        platform("franka")


def test_the_platform_a_run_needs_or_one_line_saying_why_none_fits():
    assert oft_platform("aloha", 25, 14, 14, "bounds").name == "aloha"
    assert oft_platform(None, 5, 7, 0, "bounds_q99").name == "bridge"  # found from its values
    with pytest.raises(PlatformMismatch) as err:
        oft_platform("aloha", 25, 14, 14, "bounds_q99")
    assert str(err.value) == (
        "OpenVLA-OFT would decode this aloha run wrongly: normalization bounds_q99 "
        "(aloha: bounds); train on a set converted with --robot aloha without overriding "
        "those options"
    )
    with pytest.raises(PlatformMismatch) as err:
        oft_platform(None, 4, 3, 0, "bounds_q99")
    assert "\n" not in str(err.value)
    assert "chunk 4 (OFT's libero uses 8), 3 action dims (libero: 7)" in str(err.value)
    assert "convert with --robot libero, aloha or bridge" in str(err.value)


def test_an_action_mask_other_than_the_platforms_is_refused_naming_the_option():
    libero, aloha = platform("libero"), platform("aloha")
    assert mask_mismatch(libero, [True] * 6 + [False]) is None
    assert mask_mismatch(aloha, [True] * 14) is None
    assert mask_mismatch(libero, [True] * 7) == (
        "unnormalized action dims: OpenVLA-OFT's libero 6, this run none (OFT's fine-tuning "
        "normalizes with its own, so it would teach the head other targets); convert with "
        "--no-normalize-dims 6 (or --robot libero) and train on that set"
    )
    aloha_text = mask_mismatch(aloha, [True] * 6 + [False] + [True] * 6 + [False])
    assert "OpenVLA-OFT's aloha none, this run 6,13" in aloha_text
    assert "convert without --no-normalize-dims (or with --robot aloha)" in aloha_text
    # oft_platform checks every dataset's mask once the platform is known.
    gripper_raw = [True] * 6 + [False]
    assert oft_platform(None, 8, 7, 8, "bounds_q99", [gripper_raw]).name == "libero"
    with pytest.raises(PlatformMismatch, match="this run none .*--no-normalize-dims 6"):
        oft_platform(None, 8, 7, 8, "bounds_q99", [gripper_raw, [True] * 7])
    with pytest.raises(PlatformMismatch, match="OpenVLA-OFT's aloha none, this run 13"):
        oft_platform("aloha", 25, 14, 14, "bounds", [[True] * 13 + [False]])
