"""ActionModel: the LoRA-wrapped OpenVLA base plus the L1 regression head, predicting chunks."""

from __future__ import annotations

import torch
from peft import PeftModel
from torch import nn
from transformers import PreTrainedTokenizerBase

from .bases import build_base
from .film import add_film, film_parameters
from .head import L1RegressionHead
from .lora import add_lora, count_parameters
from .model_config import ModelConfig
from .prompt import PromptTokens, sequence_ids
from .proprio import ProprioProjector


class ActionModel(nn.Module):
    """pixel_values + prompt ids -> normalized actions (B, chunk, action_dim), float32."""

    def __init__(
        self,
        config: ModelConfig,
        vla: PeftModel,
        action_head: L1RegressionHead,
        tokenizer: PreTrainedTokenizerBase,
        proprio_projector: ProprioProjector | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.vla = vla
        self.action_head = action_head
        self.proprio_projector = proprio_projector
        self.tokenizer = tokenizer
        self.ids = sequence_ids(tokenizer, vla.get_base_model().pad_token_id)
        self.prompts = PromptTokens(tokenizer, config.num_slots, self.ids)

    def tokenize(self, instructions: list[str]) -> dict[str, torch.Tensor]:
        """CPU input_ids and attention_mask (B, L), right-padded: BOS, prompt, sep, slots, EOS."""
        return self.prompts(instructions)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`proprio` (B, proprio_dim), normalized, when the config has a proprio_dim."""
        expected = 6 * self.config.num_images
        if pixel_values.shape[1] != expected:
            raise ValueError(f"pixel_values has {pixel_values.shape[1]} channels, want {expected}")
        token = None
        if self.proprio_projector is not None:
            if proprio is None or proprio.shape[-1] != self.config.proprio_dim:
                got = "none" if proprio is None else f"{proprio.shape[-1]} values"
                raise ValueError(
                    f"the policy takes {self.config.proprio_dim} state values, got {got}"
                )
            token = self.proprio_projector(proprio.to(self.proprio_projector.fc1.weight.dtype))
        features = self.vla(
            pixel_values=pixel_values,
            input_ids=input_ids,
            attention_mask=attention_mask,
            num_slots=self.config.num_slots,
            proprio_token=token,
        )
        # (B, chunk*D, H) -> (B, chunk, D*H): one row of D slot states per predicted step.
        rows = features.reshape(features.shape[0], self.config.chunk, -1)
        return self.action_head(rows.to(self.action_head.dtype)).float()

    def trainable_parameters(self) -> dict[str, int]:
        """Trainable counts (LoRA, head, total) and all parameters, for the start-of-run log."""
        film = sum(p.numel() for p in film_parameters(self.vla).values() if p.requires_grad)
        lora = count_parameters(self.vla, trainable_only=True) - film
        head = count_parameters(self.action_head, trainable_only=True)
        proprio = 0
        if self.proprio_projector is not None:
            proprio = count_parameters(self.proprio_projector, trainable_only=True)
        counts = {"lora": lora, "head": head, "proprio": proprio, "film": film}
        return {**counts, "total": sum(counts.values()), "all": count_parameters(self, False)}


def build_model(config: ModelConfig, device: torch.device | str = "cpu") -> ActionModel:
    """Base (tiny / random 7B / loaded, frozen, config.dtype) + LoRA + float32 head on device."""
    base, tokenizer = build_base(config.base, device, config.torch_dtype)
    if config.film:
        for tower in (base.vision_backbone.featurizer, base.vision_backbone.fused_featurizer):
            add_film(tower, base.hidden_size)
    if config.grad_checkpointing:
        base.set_grad_checkpointing(True)
    vla = add_lora(base, config.lora_rank)  # freezes everything else, FiLM maps included
    unused = tuple(base.unused_module_names())
    for name, param in film_parameters(base).items():
        # OFT+ trains the FiLM maps in full, beside LoRA; the unused last block's never run.
        param.requires_grad = not any(name.startswith(u + ".") for u in unused)
    with torch.device(device):
        head = L1RegressionHead(config.action_dim, base.hidden_size)
        proprio = None
        if config.proprio_dim:
            proprio = ProprioProjector(config.proprio_dim, base.hidden_size)
    return ActionModel(config, vla, head, tokenizer, proprio)
