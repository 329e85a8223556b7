"""An offline, deterministic tiny tokenizer (BPE trained in-process) standing in for Llama-2's."""

from __future__ import annotations

import string
from functools import lru_cache

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .prompt import PROMPT

# Llama-2's special ids, kept so prompt building treats both tokenizers alike.
SPECIALS = ["<unk>", "<s>", "</s>"]
METASPACE = "\u2581"  # sentencepiece's word marker; Llama's id 29871 is this token alone
PAD_TOKEN = "<PAD>"
VOCAB_SIZE = 256  # an upper bound: the small corpus stops merging earlier

_VERBS = ["pick up", "place", "put", "move", "open", "close", "push", "stack", "lift", "hand over"]
_OBJECTS = ["the red block", "the shoe", "the blue cup", "the bottle", "the drawer", "the bowl"]
_PLACES = ["on the table", "in the box", "next to the plate", "into the basket", "on the shelf"]


def _corpus() -> list[str]:
    """Fixed training text: the OFT prompt around typical robot instructions."""
    lines = []
    for verb in _VERBS:
        for obj in _OBJECTS:
            for place in _PLACES:
                lines.append(PROMPT.format(f"{verb} {obj} {place}"))
    return lines


@lru_cache(maxsize=1)
def _tiny_tokenizer_json() -> str:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    # Every printable character is in the alphabet, so any instruction encodes without <unk>.
    alphabet = sorted(set(string.printable) - set(string.whitespace)) + [METASPACE, "\n"]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer: BOS 1, EOS 2, pad right after the trained vocab (like Llama's 32000)."""
    tok = Tokenizer.from_str(_tiny_tokenizer_json())
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    wrapped.add_special_tokens({"pad_token": PAD_TOKEN})
    return wrapped
