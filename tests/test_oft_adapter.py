"""adapter_config.json as OpenVLA-OFT's peft 0.11.1 reads it, and its merge of our adapter.

The merge test runs the real peft 0.11.1 in its own environment, named by PEFT_011_PYTHON;
`make test` builds one (.venv-peft011: OFT's pins of peft, transformers and tokenizers,
borrowing our torch) and names it. By hand:
    python3 -m venv V && V/bin/pip install peft==0.11.1 transformers==4.40.1 \
        tokenizers==0.19.1 torch==2.14.1
    PEFT_011_PYTHON=V/bin/python pytest tests/test_oft_adapter.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from oft_fixtures import platform_step_dir
from peft import LoraConfig
from safetensors.torch import load_file, save_file

from trainer.inference.export import ExportConfig, export
from trainer.model.adapter_config import (
    PEFT_011_LORA_FIELDS,
    AdapterConfigError,
    config_for_peft_011,
)

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture
def oft_run(tmp_path):
    """A LIBERO-shaped step-N folder exported to OFT's layout (with the merged model)."""
    step_dir = platform_step_dir(tmp_path, chunk=8, action_dim=7, robot="libero")
    return {"exported": export(ExportConfig(step_dir, tmp_path / "oft"))}


HERE = Path(__file__).parent


def _written_by_our_peft(folder: Path, **options) -> str:
    """adapter_config.json as the peft installed here writes it (its save_pretrained)."""
    target = ["language_model.model.layers.0.mlp.up_proj"]
    config = LoraConfig(r=4, lora_alpha=4, lora_dropout=0.0, init_lora_weights="gaussian",
                        target_modules=target, **options)  # fmt: skip
    config.save_pretrained(folder)
    return (folder / "adapter_config.json").read_text()


def test_the_field_list_is_peft_0_11_1s_as_recorded():
    recorded = json.loads((ASSETS / "peft_0.11.1_lora_fields.json").read_text())
    assert recorded["peft"] == "0.11.1"
    assert set(recorded["lora_config_fields"]) == PEFT_011_LORA_FIELDS


def test_only_keys_peft_0_11_1_knows_are_kept_with_their_values(tmp_path):
    text = _written_by_our_peft(tmp_path)
    assert set(json.loads(text)) - PEFT_011_LORA_FIELDS  # newer peft writes more keys
    kept = json.loads(config_for_peft_011(text, tmp_path / "adapter_config.json"))
    assert set(kept) <= PEFT_011_LORA_FIELDS
    original = json.loads(text)
    assert all(kept[k] == original[k] for k in kept)
    assert (kept["r"], kept["lora_alpha"], kept["init_lora_weights"]) == (4, 4, "gaussian")


def test_an_adapter_that_needs_a_newer_option_is_refused(tmp_path):
    text = _written_by_our_peft(tmp_path, exclude_modules=["language_model.lm_head"])
    with pytest.raises(
        AdapterConfigError, match=r"adapter_config.json: sets exclude_modules, which"
    ):
        config_for_peft_011(text, tmp_path / "adapter_config.json")


@pytest.mark.skipif(
    not os.environ.get("PEFT_011_PYTHON"), reason="PEFT_011_PYTHON names no peft 0.11.1 python"
)
def test_peft_0_11_1_loads_our_exported_adapter_and_merges_it_as_we_do(oft_run, tmp_path):
    """from_pretrained builds LoraConfig(**json) (TypeError on a key it lacks) and loads the
    tensors strictly by name; its merge must give our merged export's weights."""
    from trainer.model.bases import build_base
    from trainer.model.weights import to_published_name

    exported = oft_run["exported"]
    base, _ = build_base("tiny", "cpu", torch.float32)
    state = {to_published_name(k): v for k, v in base.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "base.safetensors")
    out = tmp_path / "merged_by_peft011.safetensors"
    subprocess.run(
        [os.environ["PEFT_011_PYTHON"], str(HERE / "peft011_merge.py"),
         str(exported / "lora_adapter"), str(tmp_path / "base.safetensors"),
         str(exported / "config.json"), str(out)],
        check=True, stdout=sys.stdout, stderr=subprocess.PIPE, timeout=600,
    )  # fmt: skip
    theirs, ours = load_file(out), load_file(exported / "model.safetensors")
    assert set(theirs) == set(ours)
    changed = 0
    for key, tensor in ours.items():
        torch.testing.assert_close(theirs[key], tensor, rtol=1e-5, atol=1e-6, msg=key)
        changed += not torch.equal(tensor, state[key])
    # Every adapted layer's weight moved, nothing else: the merge did what LoRA says.
    adapter = load_file(exported / "lora_adapter" / "adapter_model.safetensors")
    assert changed == sum(".lora_A." in k for k in adapter) > 0
