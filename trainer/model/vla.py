"""OpenVLA's network run as OFT does: zeroed slots, full attention."""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from .film import has_film
from .projector import FusedGeluProjector
from .prompt import slot_positions
from .vision import FusedVisionBackbone

CHANNELS_PER_IMAGE = 6  # DINOv2-normalized RGB, then SigLIP-normalized RGB


def llama_config(text_config: dict) -> LlamaConfig:
    """LlamaConfig from a config.json text_config (only differences from Llama-2-7B defaults)."""
    fields = {k: v for k, v in text_config.items() if k != "model_type"}
    return LlamaConfig(**fields, attn_implementation="sdpa")


def bidirectional_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) 0/1 padding mask -> (B, 1, L, L) additive mask that hides padding and nothing else.

    transformers (4.4x and 5.x) passes a 4-D mask to attention as-is instead of building its
    causal triangle, so every token sees every other one, as OFT's patched Llama does. The
    additive float form is what both eager and SDPA attention (and 4.4x's checks) accept.
    """
    length = attention_mask.shape[1]
    blocked = attention_mask[:, None, None, :] == 0
    mask = torch.zeros(blocked.shape, dtype=dtype, device=attention_mask.device)
    mask = mask.masked_fill(blocked, torch.finfo(dtype).min)
    return mask.expand(-1, 1, length, length)


def language_mean(text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B, L, H) embeddings, (B, L) bool -> (B, H): the mean over the prompt's tokens.

    OFT averages every non-action position, padding included, so a sample's conditioning
    would depend on the longest prompt in its batch; we average real tokens only.
    """
    weights = tokens.to(text.dtype).unsqueeze(-1)
    return (text * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


class OpenVLA(nn.Module):
    """Submodule and parameter names match openvla/openvla-7b (after the ls*.gamma mapping)."""

    def __init__(self, spec: dict) -> None:
        super().__init__()
        self.spec = spec  # the config.json content a merged export writes back
        self.vision_backbone = FusedVisionBackbone(spec["timm_model_ids"])
        text_config = llama_config(spec["text_config"])
        self.projector = FusedGeluProjector(self.vision_backbone.embed_dim, text_config.hidden_size)
        self.language_model = LlamaForCausalLM(text_config)
        # Belt and braces: SDPA only falls back to is_causal when no mask is given.
        for layer in self.language_model.model.layers:
            layer.self_attn.is_causal = False

    @property
    def hidden_size(self) -> int:
        return self.language_model.config.hidden_size

    @property
    def pad_token_id(self) -> int:
        return self.language_model.config.pad_token_id

    def unused_module_names(self) -> list[str]:
        """Modules the forward pass never runs; they must stay frozen and LoRA-free for DDP."""
        vision = [f"vision_backbone.{name}" for name in self.vision_backbone.unused_module_names()]
        # The head reads hidden states, so the LM head's logits are never computed.
        return [*vision, "language_model.lm_head"]

    def set_grad_checkpointing(self, enable: bool) -> None:
        self.vision_backbone.set_grad_checkpointing(enable)
        if enable:
            self.language_model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            self.language_model.gradient_checkpointing_disable()

    def embed_images(
        self, pixel_values: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 6N, 224, 224) -> (B, N*256, H): each image's patches in turn, primary first.

        `condition` (B, H), the instruction's mean embedding, modulates FiLM towers.
        """
        batch, channels, height, width = pixel_values.shape
        if channels % CHANNELS_PER_IMAGE:
            raise ValueError(f"pixel_values needs 6 channels per image, got {channels}")
        images_per_sample = channels // CHANNELS_PER_IMAGE
        images = pixel_values.reshape(batch * images_per_sample, 6, height, width)
        dtype = self.vision_backbone.featurizer.patch_embed.proj.weight.dtype
        if condition is not None:
            condition = condition.to(dtype).repeat_interleave(images_per_sample, dim=0)
        patches = self.projector(self.vision_backbone(images.to(dtype), condition))
        return patches.reshape(batch, -1, patches.shape[-1])

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        num_slots: int,
        proprio_token: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last-layer hidden states read for the action slots, (B, num_slots, H).

        `proprio_token` (B, H), the projected robot state, follows the image patches, as in
        OFT; FiLM towers are conditioned on the mean embedding of the prompt's tokens.
        """
        if bool((attention_mask[:, 1:] > attention_mask[:, :-1]).any()):
            raise ValueError("attention_mask must be right-padded (ones, then zeros)")
        slots = slot_positions(attention_mask, num_slots)
        text = self.language_model.get_input_embeddings()(input_ids)
        # Slot embeddings are multiplied by zero in training and inference alike: no ground truth.
        keep = torch.ones_like(input_ids, dtype=torch.bool).scatter(1, slots, False)
        condition = None
        if has_film(self.vision_backbone.featurizer):
            condition = language_mean(text, keep & attention_mask.bool())
        text = text * keep.unsqueeze(-1).to(text.dtype)
        patches = self.embed_images(pixel_values, condition).to(text.dtype)
        if proprio_token is not None:
            patches = torch.cat([patches, proprio_token.to(text.dtype).unsqueeze(1)], dim=1)
        # Patches (and the state) go right after BOS, as OpenVLA-OFT does.
        sequence = torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)
        ones = attention_mask.new_ones(patches.shape[:2])
        mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        hidden = self.language_model.model(
            inputs_embeds=sequence,
            attention_mask=bidirectional_mask(mask, sequence.dtype),
            use_cache=False,
        ).last_hidden_state
        # OFT reads one position early: from the token before the first slot to the
        # second-to-last slot.
        read = slots + patches.shape[1] - 1
        return hidden.gather(1, read.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
