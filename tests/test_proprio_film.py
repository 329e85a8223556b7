"""OFT+ inputs on the model: the robot state as one token, FiLM on the vision towers."""

from __future__ import annotations

import torch

from trainer.model import ModelConfig, build_model, load_model, save_model
from trainer.model.film import FiLMBlock, film_features, film_parameters
from trainer.model.vision import tower_features

LLM_7B, DINO_7B, SIGLIP_7B = 4096, 1024, 1152  # widths of openvla-7b's Llama and towers
DINO_BLOCKS, SIGLIP_BLOCKS = 24, 27


def _inputs(policy, batch: int = 2):
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 12, 224, 224, generator=generator)
    tokens = policy.tokenize(["pick up the cup", "open the drawer"][:batch])
    return pixels, tokens["input_ids"], tokens["attention_mask"]


def test_film_with_zero_maps_gives_the_plain_towers_features():
    policy = build_model(ModelConfig(base="tiny", film=True))
    plain = build_model(ModelConfig(base="tiny"))
    tower, plain_tower = (
        p.vla.get_base_model().vision_backbone.featurizer for p in (policy, plain)
    )  # fmt: skip
    assert isinstance(tower.blocks[0], FiLMBlock)
    with torch.no_grad():
        for param in film_parameters(tower).values():
            param.zero_()
    pixels = torch.randn(2, 3, 224, 224)
    condition = torch.randn(2, 64)
    assert torch.allclose(
        film_features(tower, pixels, condition), tower_features(plain_tower, pixels), atol=1e-6
    )


def test_film_makes_the_image_features_depend_on_the_instruction():
    base = build_model(ModelConfig(base="tiny", film=True)).vla.get_base_model().eval()
    pixels = torch.randn(1, 12, 224, 224)
    with torch.no_grad():
        a, b = (base.embed_images(pixels, c) for c in (torch.zeros(1, 64), torch.ones(1, 64)))
    assert not torch.allclose(a, b)


def test_film_maps_train_in_full_and_only_where_blocks_run():
    policy = build_model(ModelConfig(base="tiny", film=True))
    pixels, ids, mask = _inputs(policy)
    policy(pixels, ids, mask).sum().backward()
    params = film_parameters(policy.vla.get_base_model())
    trained = {n for n, p in params.items() if p.requires_grad}
    assert trained == {n for n, p in params.items() if p.grad is not None}
    # The towers' last blocks never run (features come from the second-to-last): frozen.
    assert len(trained) == len(params) - 2 * 4
    counts = policy.trainable_parameters()
    assert counts["film"] == sum(params[n].numel() for n in trained) > 0


def test_the_state_token_changes_the_prediction_and_is_required():
    policy = build_model(ModelConfig(base="tiny", proprio_dim=14)).eval()
    pixels, ids, mask = _inputs(policy)
    with torch.no_grad():
        a = policy(pixels, ids, mask, torch.zeros(2, 14))
        b = policy(pixels, ids, mask, torch.ones(2, 14))
    assert not torch.allclose(a, b)
    try:
        policy(pixels, ids, mask)
    except ValueError as exc:
        assert "14 state values" in str(exc)
    else:
        raise AssertionError("a policy with a state token ran without a state")


def test_checkpoints_keep_the_state_projector_and_film_maps(tmp_path):
    config = ModelConfig(base="tiny", proprio_dim=8, film=True)
    policy = build_model(config).eval()
    with torch.no_grad():
        for param in [*policy.proprio_projector.parameters(),
                      *film_parameters(policy.vla).values()]:  # fmt: skip
            param.add_(0.1)
    save_model(policy, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt").eval()
    pixels, ids, mask = _inputs(policy)
    state = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(policy(pixels, ids, mask, state), loaded(pixels, ids, mask, state))


def test_7b_shapes_with_both_inputs_build_on_meta_and_count_as_oft_defines_them():
    policy = build_model(
        ModelConfig(base="openvla-7b-random", dtype="bfloat16", proprio_dim=8, film=True), "meta"
    )
    counts = policy.trainable_parameters()
    # OFT's ProprioProjector: Linear(8, 4096), GELU, Linear(4096, 4096), for LIBERO's state.
    assert counts["proprio"] == (8 * LLM_7B + LLM_7B) + (LLM_7B * LLM_7B + LLM_7B) == 16_818_176
    # FiLM: scale and shift, Linear(4096, tower width) each, on every block of both towers;
    # the last block of each never runs, so its maps do not train.
    per_block = {width: 2 * (LLM_7B * width + width) for width in (DINO_7B, SIGLIP_7B)}
    all_maps = DINO_BLOCKS * per_block[DINO_7B] + SIGLIP_BLOCKS * per_block[SIGLIP_7B]
    params = film_parameters(policy.vla.get_base_model())
    assert sum(p.numel() for p in params.values()) == all_maps == 456_241_920
    trained = (DINO_BLOCKS - 1) * per_block[DINO_7B] + (SIGLIP_BLOCKS - 1) * per_block[SIGLIP_7B]
    assert counts["film"] == trained == 438_411_776
    print(f"7B, r=32: {counts}")
