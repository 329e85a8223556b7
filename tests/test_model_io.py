"""Model I/O tests: policy checkpoints, PeftModel loading, strict bases in the openvla-7b layout."""

import json

import huggingface_hub
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from test_model import make_batch, tiny_policy  # pytest puts tests/ on sys.path

from trainer.model import ModelConfig, ModelLoadError, build_model, load_model, save_model
from trainer.model.bases import build_base
from trainer.model.model_config import tiny_spec
from trainer.model.tokenizer import tiny_tokenizer
from trainer.model.weights import INDEX_FILE, to_published_name


def outputs(policy, seed=0):
    pixels, batch, _ = make_batch(policy, seed)
    with torch.no_grad():
        return policy.eval()(pixels, **batch)


def trained_policy():
    """A tiny policy whose LoRA B matrices are no longer zero, so the adapter matters."""
    policy = tiny_policy()
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return policy


def test_save_load_round_trip(tmp_path):
    policy = trained_policy()
    save_model(policy, tmp_path)
    names = {"adapter_config.json", "adapter_model.safetensors", "action_head.safetensors"}
    assert names | {"model_config.json"} <= {p.name for p in tmp_path.iterdir()}
    torch.manual_seed(123)  # a different RNG state must not matter
    loaded = load_model(tmp_path)
    assert loaded.config == policy.config
    torch.testing.assert_close(outputs(loaded), outputs(policy), rtol=0, atol=0)


def test_peft_from_pretrained_loads_saved_adapter(tmp_path):
    policy = trained_policy()
    save_model(policy, tmp_path)
    base, _ = build_base("tiny", "cpu", torch.float32)
    peft_model = PeftModel.from_pretrained(base, tmp_path).eval()
    pixels, batch, _ = make_batch(policy)
    args = dict(pixel_values=pixels, **batch, num_slots=policy.config.num_slots)
    with torch.no_grad():
        torch.testing.assert_close(peft_model(**args), policy.eval().vla(**args))


def test_load_policy_errors(tmp_path):
    save_model(trained_policy(), tmp_path)
    config = json.loads((tmp_path / "model_config.json").read_text())
    (tmp_path / "model_config.json").write_text(json.dumps({**config, "action_dim": 7}))
    with pytest.raises(ModelLoadError, match="action_head.safetensors.*shape mismatch"):
        load_model(tmp_path)
    (tmp_path / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="adapter_model.safetensors is missing"):
        load_model(tmp_path)


def write_openvla_layout(directory, shards=2):
    """A tiny checkpoint laid out like openvla/openvla-7b: published names, sharded safetensors."""
    directory.mkdir()
    tokenizer = tiny_tokenizer()
    base, _ = build_base("tiny", "cpu", torch.float32)
    spec = tiny_spec(tokenizer.pad_token_id)
    config = {"model_type": "openvla", "arch_specifier": "no-align+fused-gelu-mlp", **spec}
    (directory / "config.json").write_text(json.dumps(config))
    state = {to_published_name(k): v.contiguous() for k, v in base.state_dict().items()}
    keys = sorted(state)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = keys[i::shards]
        save_file({k: state[k] for k in part}, directory / name)
        weight_map.update(dict.fromkeys(part, name))
    (directory / INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    tokenizer.save_pretrained(directory)
    return base, state


def test_load_base_directory_strictly(tmp_path):
    source, state = write_openvla_layout(tmp_path / "base")
    assert "vision_backbone.featurizer.blocks.0.ls1.scale_factor" in state
    torch.manual_seed(0)
    policy = build_model(ModelConfig(base=str(tmp_path / "base")))
    loaded = policy.vla.get_base_model()
    q_proj = "language_model.model.layers.1.self_attn.q_proj"
    expected = source.get_parameter(f"{q_proj}.weight")
    torch.testing.assert_close(loaded.get_parameter(f"{q_proj}.base_layer.weight"), expected)
    gamma = "vision_backbone.featurizer.blocks.2.ls2.gamma"
    torch.testing.assert_close(loaded.get_parameter(gamma), source.get_parameter(gamma))
    assert policy.ids.pad == source.pad_token_id
    pixels, batch, _ = make_batch(policy)
    assert policy(pixels, **batch).shape == (2, 8, 14)


@pytest.mark.parametrize("damage", ["missing", "shape"])
def test_corrupted_base_directory_is_a_clear_error(tmp_path, damage):
    directory = tmp_path / "base"
    write_openvla_layout(directory, shards=1)
    path = directory / "model-00001-of-00001.safetensors"
    state = load_file(path)
    key = "vision_backbone.fused_featurizer.blocks.1.mlp.fc2.weight"
    if damage == "missing":
        del state[key]
    else:
        state[key] = torch.zeros(3, 3)
    save_file(state, path)
    pattern = "missing key" if damage == "missing" else "shape mismatch"
    with pytest.raises(ModelLoadError, match=f"{pattern}.*{key}.*re-download"):
        build_model(ModelConfig(base=str(directory)))


def test_unreachable_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="openvla/openvla-7b.*base=DIR"):
        build_model(ModelConfig(base="openvla/openvla-7b"))
    with pytest.raises(ModelLoadError, match="not 'tiny'"):
        build_model(ModelConfig(base="no_such_dir"))


def test_a_head_saved_under_the_earlier_names_still_loads(tmp_path):
    # Checkpoints saved before the head took OFT's parameter names (in_norm, in_proj,
    # blocks.N.{norm,fc}, out_norm, out_proj) hold the same layers under other keys.
    policy = build_model(ModelConfig(base="tiny", action_dim=3, chunk=2, lora_rank=4))
    save_model(policy, tmp_path / "ckpt")
    head_file = tmp_path / "ckpt" / "action_head.safetensors"
    earlier = {
        "model.layer_norm1": "in_norm", "model.fc1": "in_proj", "model.layer_norm2": "out_norm",
        "model.fc2": "out_proj", "model.mlp_resnet_blocks.0.ffn.0": "blocks.0.norm",
        "model.mlp_resnet_blocks.0.ffn.1": "blocks.0.fc",
        "model.mlp_resnet_blocks.1.ffn.0": "blocks.1.norm",
        "model.mlp_resnet_blocks.1.ffn.1": "blocks.1.fc",
    }  # fmt: skip
    head = load_file(head_file)
    old = {earlier[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v for k, v in head.items()}
    save_file(old, head_file)
    loaded = load_model(tmp_path / "ckpt")
    for key, tensor in policy.action_head.state_dict().items():
        assert torch.equal(loaded.action_head.state_dict()[key], tensor), key
