"""Our prompt ids against Llama-2's own tokenization of OpenVLA-OFT's prompts.

tests/assets/llama2_prompt_ids.json holds the ids llama-tokenizer-js (Llama-2's vocabulary
and merges, in JavaScript) gives OFT's evaluation prompt for instructions with punctuation,
digits, capitals, accents, an emoji and leading or trailing spaces, and the part of Llama-2's
vocabulary those prompts can reach; the command that made it heads
tests/assets/llama2_prompt_ids.mjs. Our prompt rows are built here through a tokenizer made
from that vocabulary the way Llama-2's tokenizer.json is (BPE with byte fallback, "▁" for
spaces, one "▁" in front), so what is compared is our prompt building: the lower-casing, the
template, BOS, no other special token, and the separator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers
from transformers import PreTrainedTokenizerFast

from trainer.model.prompt import prompt_row, sequence_ids

FIXTURE = json.loads((Path(__file__).parent / "assets" / "llama2_prompt_ids.json").read_text())
SLOTS = 3


@pytest.fixture(scope="module")
def llama2():
    merges = [tuple(pair.split(" ")) for pair in FIXTURE["merges"]]
    bpe = models.BPE(FIXTURE["vocab"], merges, unk_token="<unk>", byte_fallback=True,
                     fuse_unk=True)  # fmt: skip
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=lambda c: c["instruction"][:24])
def test_our_prompt_row_is_llama2s_ids_of_ofts_prompt(llama2, case):
    assert case["instruction"].lower() == case["lower"]  # OFT lower-cases with Python
    ids = sequence_ids(llama2, pad_id=32000)
    assert (ids.bos, ids.eos, ids.sep) == (1, 2, 29871)
    row = prompt_row(llama2, case["instruction"], SLOTS, ids)
    assert row[: -SLOTS - 2] == case["ids"]
    assert row[-SLOTS - 2 :] == [29871, *[32000] * SLOTS, 2]


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=lambda c: c["instruction"][:24])
def test_the_separator_is_what_ofts_training_prompt_has_before_its_actions(case):
    # Training tokenizes "...Out: " + action tokens: the space becomes the lone "▁" (29871),
    # the id OFT's evaluation appends and our rows put before the slots.
    assert case["ids_with_trailing_space"] == [*case["ids"], 29871]


def test_the_fixture_covers_what_tokenizers_get_wrong():
    texts = " ".join(c["instruction"] for c in FIXTURE["cases"])
    assert any(ch.isupper() for ch in texts) and any(ch.isdigit() for ch in texts)
    assert any(ord(ch) > 0xFFFF for ch in texts)  # byte fallback (an emoji)
    assert any(c["instruction"].endswith(" ") for c in FIXTURE["cases"])
    assert any(13 in c["ids"] for c in FIXTURE["cases"])  # "\n" as the <0x0A> byte token
