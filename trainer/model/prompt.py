"""Token ids of the OFT parallel-decoding sequence: BOS, prompt, separator, action slots, EOS."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedTokenizerBase

PROMPT = "In: What action should the robot take to {}?\nOut:"
SEPARATOR_TOKEN = "\u2581"  # Llama-2 id 29871, which OFT puts between "Out:" and the actions


@dataclass(frozen=True)
class SequenceIds:
    """The fixed ids around the prompt text."""

    bos: int
    eos: int
    pad: int
    sep: int
    slot: int

    def __post_init__(self) -> None:
        for name in ("bos", "eos", "pad", "sep", "slot"):
            if getattr(self, name) is None or getattr(self, name) < 0:
                raise ValueError(f"tokenizer has no {name} id")


def sequence_ids(tokenizer: PreTrainedTokenizerBase, pad_id: int) -> SequenceIds:
    """Ids for a tokenizer; pad comes from the model config (32000 for OpenVLA)."""
    # Slots reuse the pad id: their embeddings are zeroed and forward finds them by position
    # (just before the final EOS), so the id never reaches the network.
    return SequenceIds(
        bos=tokenizer.bos_token_id,
        eos=tokenizer.eos_token_id,
        pad=pad_id,
        sep=tokenizer.convert_tokens_to_ids(SEPARATOR_TOKEN),
        slot=pad_id,
    )


def prompt_row(
    tokenizer: PreTrainedTokenizerBase, instruction: str, num_slots: int, ids: SequenceIds
) -> list[int]:
    """One sample's ids: BOS, prompt, sep, slots, EOS."""
    # BOS is added by hand so Llama and the tiny tokenizer give the same layout.
    prompt = tokenizer(PROMPT.format(instruction.lower()), add_special_tokens=False)["input_ids"]
    return [ids.bos, *prompt, ids.sep, *([ids.slot] * num_slots), ids.eos]


def pad_rows(rows: list[torch.Tensor], pad: int) -> dict[str, torch.Tensor]:
    """1-D id tensors -> right-padded input_ids and attention_mask (B, longest row)."""
    input_ids = pad_sequence(rows, batch_first=True, padding_value=pad)
    lengths = torch.tensor([len(row) for row in rows])
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask}


class PromptTokens:
    """Instructions -> right-padded input_ids and attention_mask (B, L): BOS, prompt, sep,
    slots, EOS, pad; each distinct instruction is tokenized once.

    A run sees a few hundred distinct instructions at most, each in thousands of batches, so
    the training process tokenizes almost nothing after the first epoch.
    """

    MAX_CACHED = 100_000  # a set with more distinct instructions starts the cache afresh

    def __init__(self, tokenizer: PreTrainedTokenizerBase, num_slots: int, ids: SequenceIds):
        self.tokenizer = tokenizer
        self.num_slots = num_slots
        self.ids = ids
        self.rows: dict[str, torch.Tensor] = {}

    def __call__(self, instructions: list[str]) -> dict[str, torch.Tensor]:
        return pad_rows([self._row(text) for text in instructions], self.ids.pad)

    def _row(self, text: str) -> torch.Tensor:
        row = self.rows.get(text)
        if row is None:
            if len(self.rows) >= self.MAX_CACHED:
                self.rows.clear()
            ids = prompt_row(self.tokenizer, text, self.num_slots, self.ids)
            row = self.rows[text] = torch.tensor(ids, dtype=torch.long)
        return row


def slot_positions(attention_mask: torch.Tensor, num_slots: int) -> torch.Tensor:
    """(B, num_slots) text positions of the action slots: the num_slots tokens before EOS."""
    lengths = attention_mask.sum(dim=1, keepdim=True)
    offsets = torch.arange(num_slots, device=attention_mask.device)
    return lengths - 1 - num_slots + offsets
