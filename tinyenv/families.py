"""Tiny builders for the model-swap matrix (Qwen2.5-VL, Qwen3-VL, Gemma 3, SmolVLM2), on `tiny_build`'s machinery."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable

from transformers import GemmaTokenizer, GPT2Tokenizer

from tinyenv import build as tiny_build
from tinyenv.build import SPECS, hub_file

# Gemma's first ids as on the hub (and in GemmaTokenizer's defaults); the hub's <unused*>, table and
# [multimodal] tokens are left out of the tiny vocabulary.
GEMMA_START = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
GEMMA_NAMED = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
# SmolLM2's first ids (its code-dataset tokens 3..16 are left out of the tiny vocabulary).
SMOLLM2_START = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
SMOLVLM_NAMED = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                 "end_of_utterance_token": "<end_of_utterance>", "global_image_token": "<global-img>"}


def _vocab(start: dict[str, int], regular: list[str], added: dict[str, int]) -> dict[str, int]:
    """The hub's leading tokens, the trained BPE tokens, then the added tokens in hub order."""
    vocab = dict(start)
    for token in regular:
        if token not in added:
            vocab.setdefault(token, len(vocab))
    return vocab | {t: len(vocab) + rank for rank, t in enumerate(sorted(added, key=added.get))}


def _finish(tok: Any, out: Path, kind: str, added: dict[str, int]) -> None:
    """Register the added tokens as special, save the tokenizer, the hub files and random weights."""
    tok.add_special_tokens({"additional_special_tokens": sorted(added, key=added.get)},
                           replace_extra_special_tokens=False)
    tok.save_pretrained(out)
    tiny_build._write_hub_files(out, kind, *tiny_build._written_ids(out, kind))
    tiny_build._save_model(out, kind)


def build_gemma3(out: Path) -> None:
    """Tiny gemma-3-4b-it: the hub's config (shrunk) and processor files, a Gemma-style byte-fallback BPE; random weights."""
    added = json.loads(hub_file(SPECS["gemma3"]["added_tokens"]))
    regular, merges = tiny_build._trained_bpe(GemmaTokenizer())
    start = GEMMA_START | {f"<0x{b:02X}>": len(GEMMA_START) + b for b in range(256)}
    tok = GemmaTokenizer(vocab=_vocab(start, regular, added), merges=merges, add_bos_token=True,
                         add_eos_token=False, extra_special_tokens=GEMMA_NAMED)
    _finish(tok, out, "gemma3", added)


def build_smolvlm2(out: Path) -> None:
    """Tiny SmolVLM2-2.2B-Instruct: the hub's config (shrunk) and processor files, a SmolLM2-style BPE; random weights."""
    added = json.loads(hub_file(SPECS["smolvlm2"]["added_tokens"]))
    regular, merges = tiny_build._trained_bpe(GPT2Tokenizer())
    tok = GPT2Tokenizer(vocab=_vocab(SMOLLM2_START, regular, added), merges=merges, bos_token="<|im_start|>",
                        eos_token="<end_of_utterance>", pad_token="<|im_end|>", unk_token="<|endoftext|>",
                        extra_special_tokens=SMOLVLM_NAMED)
    _finish(tok, out, "smolvlm2", added)


BUILDERS: dict[str, Callable[[Path], None]] = tiny_build.BUILDERS | {
    "qwen2_5_vl": functools.partial(tiny_build.build_qwen, kind="qwen2_5_vl"),
    "qwen3_vl": functools.partial(tiny_build.build_qwen, kind="qwen3_vl"),
    "gemma3": build_gemma3,
    "smolvlm2": build_smolvlm2,
}
