"""Does a notebook section fit its card: predicted peaks of training and generation, and freeing what a section leaves."""

from __future__ import annotations

import gc
import math
import weakref
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from helpers.budget import CUDA_CONTEXT, MemoryEstimate, layer_cost
from helpers.budget_tables import LACKS, STACKS
from helpers.weights import GIB, load_config, meta_model, quantized_linears, weight_bytes
from helpers.vision import image_tokens, pixel_bytes

# Usable GiB as the driver reports them (notebook 02's table).
CARDS = {"T4 16GB": 15, "L4 24GB": 22, "A100 40GB": 40, "A100 80GB": 80}
# Peak HBM bandwidth (bytes/s) and dense bf16 peak (FLOP/s) of the cards, from NVIDIA's data sheets.
CARD_SPEED = {"A100 40GB": (1.555e12, 312e12), "A100 80GB": (2.039e12, 312e12)}


def estimate_generation_memory(config: str | Path | PretrainedConfig, *, method: str = "lora", lora_config: Any = None,
                               batch_size: int = 1, text_tokens: int = 64, image_size: tuple[int, int] = (600, 800),
                               new_tokens: int = 16, max_pixels: int | None = None,
                               do_image_splitting: bool | None = None) -> MemoryEstimate:
    """Predict the peak of batched greedy generation: weights (bf16 or NF4), an fp32 adapter, the KV cache, and the
    prefill's largest layer, bounded above by that layer's training peak per token (no-grad keeps less)."""
    cfg = load_config(config)
    plain = meta_model(cfg)
    weights = weight_bytes(plain, torch.bfloat16, load_in_4bit=method == "qlora")
    adapter = 0
    if lora_config is not None:  # PeftModel.from_pretrained keeps adapter weights in fp32
        adapter = 4 * sum(p.numel() for n, p in meta_model(cfg, lora_config).named_parameters() if "lora_" in n)
    img_tokens, patches = image_tokens(cfg, *image_size, max_pixels=max_pixels, do_image_splitting=do_image_splitting)
    text = cfg.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    seq = text_tokens + img_tokens + new_tokens
    kv_cache = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * 2 * batch_size * seq
    working = 0
    for path, modality in STACKS[cfg.model_type]:
        layer = plain.get_submodule(path)[0]
        kind = "frozen" if modality == "vision" else "qv"
        tokens = batch_size * (text_tokens + img_tokens if modality == "text" else patches)
        working = max(working, tokens * layer_cost(layer, f"{type(layer).__name__}/{kind}")[1])
    logits = batch_size * text.vocab_size * 4 * 2  # the last position's fp32 logits and their softmax
    dequant = 2 * max(quantized_linears(plain).values()) if method == "qlora" else 0
    return MemoryEstimate(weights=weights, adapter=adapter, gradients=0, optimizer=0, reference=0,
                          activations=kv_cache, transient=working + logits + dequant,
                          inputs=batch_size * pixel_bytes(cfg, patches), lacks=LACKS.get(cfg.model_type, ()))


def fits(estimate: MemoryEstimate, card: str) -> bool:
    """True when the predicted peak plus the CUDA context fits the card's usable memory."""
    return estimate.peak + CUDA_CONTEXT <= CARDS[card] * GIB


def report(label: str, estimate: MemoryEstimate, card: str) -> bool:
    """Print the predicted peak next to the card, and return whether it fits."""
    ok = fits(estimate, card)
    print(f"{label}: predicted peak {estimate.peak / GIB:.1f} GiB + {CUDA_CONTEXT / GIB:.1f} GiB CUDA context "
          f"on the {card} ({CARDS[card]} GiB): {'fits' if ok else 'DOES NOT FIT'}")
    return ok


def generation_seconds_lower_bound(config: str | Path | PretrainedConfig, card: str, prompts: int, batch_size: int,
                                   prompt_tokens: int, new_tokens: int, load_in_4bit: bool = False) -> float:
    """A floor on generation time: the prefill's 2 x parameters x tokens FLOPs at the card's bf16 peak, plus one read
    of the weights per decode step at its peak bandwidth. Real runs are slower; this is not a measurement."""
    cfg = load_config(config)
    plain = meta_model(cfg)
    params = sum(p.numel() for p in plain.parameters())
    bandwidth, flops = CARD_SPEED[card]
    prefill = 2 * params * prompts * prompt_tokens / flops
    steps = math.ceil(prompts / batch_size) * new_tokens
    return prefill + steps * weight_bytes(plain, torch.bfloat16, load_in_4bit=load_in_4bit) / bandwidth


def free_memory(*released: weakref.ref) -> float:
    """Collect garbage and give cached CUDA blocks back (after `del`); return the GiB still allocated. Raise if a model
    whose weak reference is passed in `released` is still alive: something else (a trainer, a wrapper) holds it."""
    gc.collect()
    alive = [type(ref()).__name__ for ref in released if ref() is not None]
    if alive:
        raise RuntimeError(f"still referenced after del: {alive}")
    if not torch.cuda.is_available():
        return 0.0
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated() / GIB
