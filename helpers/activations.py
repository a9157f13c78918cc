"""Activation bytes per token of one transformer layer, measured from autograd at the real width (CPU, no weights)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

PROBE_TOKENS = 64


@dataclass(frozen=True)
class LayerActivations:
    """Bytes per token one layer keeps for backward (`saved`) and its forward+backward peak above its inputs (`peak`)."""

    saved: float
    peak: float


_TEXT_LAYERS = ("Qwen2VLDecoderLayer", "MistralDecoderLayer", "Qwen2_5_VLDecoderLayer", "Qwen3VLTextDecoderLayer",
                "Gemma3DecoderLayer", "LlamaDecoderLayer")
_QWEN_VISION = ("Qwen2VLVisionBlock", "Qwen2_5_VLVisionBlock", "Qwen3VLVisionBlock")
_SIGLIP_LAYERS = ("Idefics2EncoderLayer", "SiglipEncoderLayer", "SmolVLMEncoderLayer")


def _inputs(layer: nn.Module, tokens: int, dtype: torch.dtype) -> tuple[tuple, dict]:
    """Arguments of one layer call for `tokens` tokens, by layer class (text decoders and vision encoders)."""
    name = type(layer).__name__
    if name in _TEXT_LAYERS:
        attn = layer.self_attn
        hidden = torch.randn(1, tokens, layer.hidden_size, dtype=dtype)
        cos = torch.ones(1, tokens, attn.head_dim, dtype=dtype)
        return (hidden,), {"position_embeddings": (cos, torch.zeros_like(cos)), "attention_mask": None}
    if name in _QWEN_VISION:  # one image of `tokens` patches: varlen attention over cu_seqlens, 2-D rotary
        width = layer.norm1.weight.shape[0]
        hidden = torch.randn(tokens, width, dtype=dtype)
        cos = torch.ones(tokens, width // layer.attn.num_heads, dtype=dtype)
        cu = torch.tensor([0, tokens], dtype=torch.int32)
        return (hidden,), {"cu_seqlens": cu, "position_embeddings": (cos, torch.zeros_like(cos))}
    if name in _SIGLIP_LAYERS:
        return (torch.randn(1, tokens, layer.embed_dim, dtype=dtype),), {"attention_mask": None}
    raise NotImplementedError(f"no activation probe for {name}")


def cpu_peak(fn) -> int:
    """Peak bytes allocated on the CPU while `fn` runs, above what was live before (torch profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def measure_layer(layer: nn.Module, lora_targets: tuple[str, ...] = (), r: int = 8, dropout: float = 0.05,
                  tokens: int = PROBE_TOKENS, trainable: bool = False, input_grad: bool = True) -> LayerActivations:
    """Run one layer (bf16 autocast, LoRA on `lora_targets`) and measure its activation bytes per token.

    With `input_grad=False` and nothing trainable (a frozen vision tower) nothing is saved: `peak` is the forward's.
    """
    from peft import LoraConfig, inject_adapter_in_model

    layer = copy.deepcopy(layer).to_empty(device="cpu").to(torch.bfloat16)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.02)
        p.requires_grad_(trainable)
    if lora_targets:
        layer = inject_adapter_in_model(LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=dropout,
                                                   target_modules=list(lora_targets)), layer)
        for n, p in layer.named_parameters():
            if "lora_" in n:
                p.data = p.data.float()  # peft keeps adapters in fp32 on a bf16 base
    layer.train()
    args, kwargs = _inputs(layer, tokens, torch.bfloat16)
    args[0].requires_grad_(input_grad)
    skip = {t.untyped_storage()._cdata for t in (*args, *kwargs.get("position_embeddings", ()))}
    skip |= {p.untyped_storage()._cdata for p in layer.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage()._cdata
        if key not in skip:
            seen.setdefault(key, t.untyped_storage().nbytes())
        return t

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(*args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        if out.requires_grad:
            out.float().sum().backward()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            layer(*args, **kwargs)
    grads = sum(p.numel() * p.element_size() for p in layer.parameters() if p.requires_grad)  # not activations
    peak = cpu_peak(step) - (grads if trainable else 0)
    return LayerActivations(saved=sum(seen.values()) / tokens, peak=peak / tokens)
