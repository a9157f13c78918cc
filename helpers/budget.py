"""Training-memory estimate, term by term: weights, adapter, gradients, AdamW, DPO reference, activations."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig

from helpers.budget_tables import LACKS, LAYER_ACTIVATIONS, LORA_KINDS, STACKS
from helpers.weights import GIB, load_config, meta_model, quantized_linears, weight_bytes
from helpers.vision import image_tokens, pixel_bytes

_MEASURED: dict[str, tuple[int, int]] = {}
CUDA_CONTEXT = GIB // 2  # assumption: CUDA context + cuBLAS workspace, outside torch.cuda.max_memory_allocated
LOGIT_COPIES = 3  # fp32 logits of a scored token alive at once in TRL's fused LM head: logits, softmax, gradient


@dataclass
class MemoryEstimate:
    """Predicted bytes of one training step, term by term; `peak` is what `torch.cuda.max_memory_allocated` reports."""

    weights: int
    adapter: int
    gradients: int
    optimizer: int
    reference: int
    activations: int
    transient: int
    inputs: int
    lacks: tuple[str, ...] = ()  # what the estimate leaves out for this architecture (budget_tables.LACKS)

    def terms(self) -> dict[str, int]:
        """The byte terms, without `lacks`."""
        return {k: v for k, v in asdict(self).items() if k != "lacks"}

    @property
    def peak(self) -> int:
        """Every term at once: the allocated peak, without the CUDA context."""
        return sum(self.terms().values())

    def gib(self) -> dict[str, float]:
        """The terms and the peak in GiB."""
        return {k: v / GIB for k, v in {**self.terms(), "peak": self.peak}.items()}


def _stack_kinds(model: nn.Module, plain: nn.Module, method: str) -> list[tuple[str, nn.Module, int, str]]:
    """(modality, first layer of `plain`, number of layers, LORA_KINDS key) of every stack, from where LoRA landed
    in `model`; the layer comes from the LoRA-free `plain` model because the probe injects LoRA itself."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    out = []
    for path, modality in STACKS[base.config.model_type]:
        stack = base.get_submodule(path)
        name = type(stack[0]).__name__
        lora = {n.split(".")[-1] for n, m in stack[0].named_modules() if hasattr(m, "lora_A")}
        if method == "full":
            kind = "full"
        elif not lora:
            kind = "frozen" if modality == "vision" else "qv"
        else:
            kind = "qv" if lora <= {"q_proj", "v_proj"} else "all-linear"
        out.append((modality, plain.get_submodule(path)[0], len(stack), f"{name}/{kind}"))
    return out


def estimate_training_memory(config: str | Path | PretrainedConfig, *, method: str = "qlora", lora_config: Any = None,
                             batch_size: int = 1, text_tokens: int = 64, image_size: tuple[int, int] = (600, 800),
                             scored_tokens: int = 8, dpo: bool = False, gradient_checkpointing: bool = True,
                             max_pixels: int | None = None, do_image_splitting: bool | None = None,
                             full_dtype: torch.dtype = torch.float32) -> MemoryEstimate:
    """Predict one step's peak: `method` is "full" (weights in `full_dtype`), "lora" (bf16) or "qlora" (NF4).

    Activations use bf16 autocast and per-token layer costs measured by `benchmarks/activation_probe.py`; with
    gradient checkpointing each layer keeps its bf16 input and one layer is live again during backward. DPO runs
    chosen and rejected as 2 x `batch_size` sequences; its reference is the base with the adapter disabled (no copy)
    under PEFT, a second frozen model otherwise.
    """
    cfg = load_config(config)
    plain = meta_model(cfg)
    model = meta_model(cfg, lora_config) if method != "full" and lora_config is not None else plain
    w_dtype = full_dtype if method == "full" else torch.bfloat16
    weights = weight_bytes(plain, w_dtype, load_in_4bit=method == "qlora")
    trainable = [p for n, p in model.named_parameters() if (method == "full" or "lora_" in n)]
    n_train = sum(p.numel() for p in trainable)
    # peft keeps LoRA adapters in fp32; TRL casts them to bf16 on a 4-bit base (as the QLoRA paper does)
    p_size = torch.finfo(w_dtype).bits // 8 if method == "full" else 2 if method == "qlora" else 4
    adapter = 0 if method == "full" else n_train * p_size
    reference = weights if dpo and method == "full" else 0
    seqs = batch_size * (2 if dpo else 1)
    img_tokens, patches = image_tokens(cfg, *image_size, max_pixels=max_pixels, do_image_splitting=do_image_splitting)
    text_cfg = cfg.get_text_config()
    saved = working = 0
    for modality, layer, n_layers, key in _stack_kinds(model, plain, method):
        tokens = seqs * (text_tokens + img_tokens if modality == "text" else patches)
        hidden = layer_width(layer)
        per_saved, per_peak = layer_cost(layer, key)
        if key.endswith("/frozen"):
            working = max(working, tokens * per_peak)
        elif gradient_checkpointing:
            saved += n_layers * tokens * hidden * 2
            working = max(working, tokens * per_peak)
        else:
            saved += n_layers * tokens * per_saved
            working = max(working, tokens * (per_peak - per_saved))
    scored = min(seqs * scored_tokens, 32768)  # TRL's fused LM head scores labelled tokens only, in chunks
    logits = scored * text_cfg.vocab_size * 4 * LOGIT_COPIES
    dequant = 2 * max(quantized_linears(plain).values()) if method == "qlora" else 0
    return MemoryEstimate(weights=weights, adapter=adapter, gradients=n_train * p_size,
                          optimizer=2 * n_train * p_size, reference=reference, activations=int(saved),
                          transient=int(working + logits + dequant), inputs=seqs * pixel_bytes(cfg, patches),
                          lacks=LACKS.get(cfg.model_type, ()))


def layer_width(layer: nn.Module) -> int:
    """Hidden width of a layer (what a checkpoint keeps per token)."""
    if hasattr(layer, "hidden_size"):
        return layer.hidden_size
    norm = getattr(layer, "norm1", None) or getattr(layer, "layer_norm1")
    return norm.weight.shape[0]  # LayerNorm or RMSNorm (Qwen2.5-VL's vision tower)


def layer_cost(layer: nn.Module, key: str) -> tuple[int, int]:
    """(saved, peak) bytes per token of `layer` trained as `key`: from the table, else measured once."""
    width_key = f"{key}@{layer_width(layer)}"
    if width_key in LAYER_ACTIVATIONS:
        return LAYER_ACTIVATIONS[width_key]
    if width_key not in _MEASURED:
        from helpers.activations import measure_layer

        name, kind = key.split("/")
        a = measure_layer(layer, LORA_KINDS[name][kind], trainable=kind == "full", input_grad=kind != "frozen")
        _MEASURED[width_key] = (round(a.saved), round(max(a.saved, a.peak)))
    return _MEASURED[width_key]


def largest_batch(capacity_gib: float, one: MemoryEstimate, two: MemoryEstimate, limit: int = 64) -> int:
    """Largest per-device batch whose peak + CUDA context fits, from the estimates at batch 1 and 2 (linear in batch)."""
    per_sample = two.peak - one.peak
    room = capacity_gib * GIB - CUDA_CONTEXT - (one.peak - per_sample)
    return max(0, min(limit, int(room // per_sample)))


def estimate_grpo_memory(config: str | Path | PretrainedConfig, *, generation_batch: int, completion_tokens: int,
                         prompt_tokens: int = 64, **step: Any) -> MemoryEstimate:
    """One GRPO step: sampling `generation_batch` completions (bf16 KV cache of each prompt, image and completion,
    and their pixels), then training on `batch_size` of them as `estimate_training_memory` counts it; the phases do
    not overlap. The reference is the adapter-disabled policy, as for DPO under PEFT: no copy."""
    cfg = load_config(config)
    train = estimate_training_memory(cfg, text_tokens=prompt_tokens + completion_tokens,
                                     scored_tokens=completion_tokens, **step)
    img, patches = image_tokens(cfg, *step.get("image_size", (600, 800)), max_pixels=step.get("max_pixels"),
                                do_image_splitting=step.get("do_image_splitting"))
    text = cfg.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv = generation_batch * (prompt_tokens + img + completion_tokens) * text.num_hidden_layers * 2 * \
        text.num_key_value_heads * head_dim * 2
    sampling = dict(activations=0, transient=kv, inputs=generation_batch * pixel_bytes(cfg, patches))
    if sum(sampling.values()) <= train.activations + train.transient + train.inputs:
        return train
    return replace(train, **sampling)
