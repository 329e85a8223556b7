"""Model tests: 7B names and counts on meta, sequence layout, attention, tiny training."""

import json
from pathlib import Path

import pytest
import torch

from trainer.model import ModelConfig, ModelLoadError, build_model, normalize_images
from trainer.model.bases import build_base, loaded_base
from trainer.model.head import L1RegressionHead
from trainer.model.model_config import OPENVLA_7B_SPEC
from trainer.model.vla import bidirectional_mask
from trainer.model.weights import published_shapes

INSTRUCTIONS = ["Pick up the shoe", "place the red block in the box next to the plate"]


@pytest.fixture(scope="module")
def base_7b_meta():
    model, _ = build_base("openvla-7b-random", "meta", torch.bfloat16)
    return model


def make_batch(policy, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(2, policy.config.num_images, 3, 224, 224, generator=gen)
    target = torch.rand(2, policy.config.chunk, policy.config.action_dim, generator=gen) * 2 - 1
    return normalize_images(images), policy.tokenize(INSTRUCTIONS), target


def tiny_policy(**kwargs):
    torch.manual_seed(0)
    return build_model(ModelConfig(**kwargs))


def test_7b_names_and_shapes_match_published_checkpoint(base_7b_meta):
    shapes = published_shapes(base_7b_meta)
    assert shapes["vision_backbone.featurizer.blocks.0.ls1.scale_factor"] == (1024,)
    assert shapes["vision_backbone.featurizer.blocks.23.ls2.scale_factor"] == (1024,)
    assert shapes["vision_backbone.featurizer.pos_embed"] == (1, 256, 1024)
    assert shapes["vision_backbone.featurizer.reg_token"] == (1, 4, 1024)
    assert shapes["vision_backbone.fused_featurizer.pos_embed"] == (1, 256, 1152)
    assert shapes["vision_backbone.fused_featurizer.blocks.26.mlp.fc1.weight"] == (4304, 1152)
    assert shapes["vision_backbone.fused_featurizer.attn_pool.latent"] == (1, 1, 1152)
    assert shapes["projector.fc1.weight"] == (8704, 2176)
    assert shapes["projector.fc3.weight"] == (4096, 4096)
    assert shapes["language_model.model.embed_tokens.weight"] == (32064, 4096)
    assert shapes["language_model.model.layers.31.mlp.down_proj.weight"] == (4096, 11008)
    assert shapes["language_model.lm_head.weight"] == (32064, 4096)
    assert not any(".gamma" in name for name in shapes)
    prefixes = ("vision_backbone.featurizer.", "vision_backbone.fused_featurizer.", "projector.")
    prefixes += ("language_model.model.", "language_model.lm_head.")
    assert all(name.startswith(prefixes) for name in shapes)
    assert sum(p.numel() for p in base_7b_meta.projector.parameters()) == 71_385_600
    assert base_7b_meta.pad_token_id == 32000


def test_7b_trainable_counts_on_meta(base_7b_meta):
    policy = build_model(ModelConfig(base="openvla-7b-random", dtype="bfloat16"), "meta")
    counts = policy.trainable_parameters()
    assert counts["head"] == 268_644_366
    assert counts["lora"] == 107_969_280
    # LoRA is r * (fan_in + fan_out) per adapted layer; count it from the 7B skeleton itself.
    rank = 32
    expected = 0
    unused = tuple(base_7b_meta.unused_module_names())
    for name, module in base_7b_meta.named_modules():
        if name.startswith(unused):
            continue
        if isinstance(module, torch.nn.Linear):
            expected += rank * (module.in_features + module.out_features)
        elif isinstance(module, torch.nn.Conv2d):  # lora_A is a conv, lora_B a 1x1 conv
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            expected += rank * (fan_in + module.out_channels)
    assert counts["lora"] == expected
    patch_embeds = [n for n, p in policy.vla.named_parameters() if "patch_embed.proj.lora_" in n]
    assert len(patch_embeds) == 4
    assert sum(policy.vla.get_parameter(n).numel() for n in patch_embeds) == 107_264
    base = policy.vla.get_base_model()
    for name in base.unused_module_names():
        assert not any(p.requires_grad for p in base.get_submodule(name).parameters()), name
    frozen_dtypes = {p.dtype for n, p in policy.vla.named_parameters() if "lora_" not in n}
    assert frozen_dtypes == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in policy.parameters() if p.requires_grad)


def test_head_parameter_count():
    with torch.device("meta"):
        assert sum(p.numel() for p in L1RegressionHead(14, 4096).parameters()) == 268_644_366
        assert sum(p.numel() for p in L1RegressionHead(7, 4096).parameters()) == 151_117_831


def test_config_checks():
    with pytest.raises(ValueError, match="dtype"):
        ModelConfig(dtype="float16")
    with pytest.raises(ValueError, match="chunk"):
        ModelConfig(chunk=0)


def test_normalize_images():
    images = torch.rand(2, 3, 3, 224, 224)
    out = normalize_images(images)
    assert out.shape == (2, 18, 224, 224) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0], (images[:, 0, 0] - 0.485) / 0.229)
    torch.testing.assert_close(out[:, 5], (images[:, 0, 2] - 0.5) / 0.5)
    torch.testing.assert_close(out[:, 7], (images[:, 1, 1] - 0.456) / 0.224)
    as_uint8 = (images * 255).round().to(torch.uint8)
    torch.testing.assert_close(normalize_images(as_uint8), normalize_images(as_uint8 / 255.0))


def test_tokenize_layout():
    policy = tiny_policy()
    ids = policy.ids
    batch = policy.tokenize(INSTRUCTIONS)
    input_ids, mask = batch["input_ids"], batch["attention_mask"]
    slots = policy.config.num_slots
    lengths = mask.sum(1)
    assert input_ids.shape == (2, int(lengths.max()))
    assert lengths[0] < lengths[1] and mask[0, lengths[0] :].eq(0).all()
    for row, length in zip(input_ids, lengths.tolist(), strict=True):
        assert row[0] == ids.bos == 1 and row[length - 1] == ids.eos == 2
        assert row[length - 2 - slots] == ids.sep
        assert row[length - 1 - slots : length - 1].eq(ids.slot).all()
        assert row[length:].eq(ids.pad).all()
    upper, lower = policy.tokenize(["PICK UP"]), policy.tokenize(["pick up"])
    assert torch.equal(upper["input_ids"], lower["input_ids"])


def test_attention_is_bidirectional_and_hides_padding():
    base, _ = build_base("tiny", "cpu", torch.float32)
    llm = base.language_model.model
    embeds = torch.randn(1, 10, base.hidden_size)
    mask = torch.tensor([[1] * 8 + [0] * 2])

    def hidden(x):
        return llm(
            inputs_embeds=x, attention_mask=bidirectional_mask(mask, x.dtype)
        ).last_hidden_state

    later, padded = embeds.clone(), embeds.clone()
    later[0, 7] += 1.0
    padded[0, 9] += 1.0
    assert not torch.allclose(hidden(later)[0, 0], hidden(embeds)[0, 0])
    torch.testing.assert_close(hidden(padded)[0, :8], hidden(embeds)[0, :8])


def test_action_slots_carry_no_ground_truth():
    policy = tiny_policy().eval()
    pixels, batch, _ = make_batch(policy)
    scrambled = batch["input_ids"].clone()
    lengths = batch["attention_mask"].sum(1)
    for i, length in enumerate(lengths.tolist()):
        start = length - 1 - policy.config.num_slots
        scrambled[i, start : length - 1] = torch.randint(3, 200, (policy.config.num_slots,))
    with torch.no_grad():
        out = policy(pixels, batch["input_ids"], batch["attention_mask"])
        torch.testing.assert_close(policy(pixels, scrambled, batch["attention_mask"]), out)
        other_prompt = policy.tokenize(["open the drawer", INSTRUCTIONS[1]])
        changed = policy(pixels, **other_prompt)
    assert not torch.allclose(changed[0], out[0])
    torch.testing.assert_close(changed[1], out[1])


def test_tiny_training_reduces_l1_and_is_deterministic():
    policy = tiny_policy()
    pixels, batch, target = make_batch(policy)
    # One target for both samples: zero-embedded slots differ only through RoPE, which a
    # random 2-layer model barely uses, so per-sample targets would need many more steps.
    target = target[:1].expand_as(target)
    out = policy(pixels, **batch)
    assert out.shape == (2, 8, 14) and out.dtype == torch.float32
    torch.testing.assert_close(tiny_policy()(pixels, **batch), out)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(10):
        loss = (policy(pixels, **batch) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        # DDP without find_unused_parameters needs a gradient for every trainable tensor.
        assert all(p.grad is not None for p in policy.parameters() if p.requires_grad)
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]


def test_grad_checkpointing_gives_same_gradients():
    grads = []
    for checkpointing in (False, True):
        policy = tiny_policy(grad_checkpointing=checkpointing)
        pixels, batch, target = make_batch(policy)
        (policy(pixels, **batch) - target).abs().mean().backward()
        grads.append({n: p.grad for n, p in policy.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        # lora_A starts gaussian and lora_B at zero, so lora_B gets a gradient everywhere.
        if "lora_B" in name:
            assert grads[1][name] is not None and grads[1][name].abs().sum() > 0, name
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6)


def test_7b_skeleton_loads_openvla_7b_weight_list_strictly():
    """Every one of openvla-7b's 982 tensors, by name and shape, and nothing else."""
    listing = json.loads((Path(__file__).parent / "assets" / "openvla_7b_weights.json").read_text())
    shapes = listing["shapes"]
    assert len(shapes) == 982
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 7_541_237_184
    with torch.device("meta"):
        state = {name: torch.empty(shape, dtype=torch.bfloat16) for name, shape in shapes.items()}
    model = loaded_base(OPENVLA_7B_SPEC, state, "openvla_7b_weights.json", "meta", torch.bfloat16)
    assert published_shapes(model) == {k: tuple(v) for k, v in shapes.items()}
    # One tensor short, or one too many, is refused by name.
    short = dict(state)
    del short["projector.fc3.bias"]
    with pytest.raises(ModelLoadError, match="missing key.*projector.fc3.bias"):
        loaded_base(OPENVLA_7B_SPEC, short, "short", "meta", torch.bfloat16)
