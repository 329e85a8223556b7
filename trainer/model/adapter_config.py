"""adapter_config.json as OpenVLA-OFT's peft (0.11.1) reads it: only the keys its LoraConfig has.

peft 0.11.1 builds `LoraConfig(**json)` and raises TypeError on any key it does not know, and
newer peft writes many (peft_version, exclude_modules, lora_bias, eva_config, ...). A key
0.11.1 lacks may be dropped only when it holds its "off" value: an adapter that needs one of
them (DoRA-style bias, excluded modules, ...) would mean something else there, and is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from common.errors import UserError

# dataclasses.fields(peft.LoraConfig) in peft 0.11.1 (tests/assets/peft_0.11.1_lora_fields.json
# records them and the command that listed them).
PEFT_011_LORA_FIELDS = frozenset(
    {
        "alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out",
        "inference_mode", "init_lora_weights", "layer_replication", "layers_pattern",
        "layers_to_transform", "loftq_config", "lora_alpha", "lora_dropout", "megatron_config",
        "megatron_core", "modules_to_save", "peft_type", "r", "rank_pattern", "revision",
        "target_modules", "task_type", "use_dora", "use_rslora",
    }
)  # fmt: skip
# Newer keys that describe the file or an option left off, whatever their value.
_DESCRIPTIVE = frozenset({"peft_version", "qalora_group_size"})


class AdapterConfigError(UserError):
    """An adapter config OFT's peft could not read the same."""


def config_for_peft_011(text: str, source: Path) -> str:
    """The adapter config JSON with only the keys peft 0.11.1 knows; errors name `source`."""
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise AdapterConfigError(f"{source}: not JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise AdapterConfigError(f"{source}: not a LoRA adapter config (peft_type LORA)")
    needed = sorted(
        k
        for k, v in config.items()
        if k not in PEFT_011_LORA_FIELDS
        and k not in _DESCRIPTIVE
        and v not in (None, False, {}, [])
    )
    if needed:
        raise AdapterConfigError(
            f"{source}: sets {', '.join(needed)}, which OpenVLA-OFT's peft 0.11.1 does not "
            "have; it would load a different adapter (train without those options)"
        )
    kept = {k: v for k, v in config.items() if k in PEFT_011_LORA_FIELDS}
    return json.dumps(kept, indent=2, sort_keys=True) + "\n"
