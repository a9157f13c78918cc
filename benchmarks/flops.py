"""Model FLOPs of one LoRA training step of a VLM, from its architecture (for MFU): every matmul, conv and attention."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from helpers.weights import load_config, meta_model

# Peak dense bf16 matmul throughput (FLOP/s), from the vendors' data sheets; MFU divides by these
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "T4": 65e12}


@dataclass
class StepShape:
    """What one step feeds the model: `rows` sequences of `seq` tokens, `images` images of `patches` patches each."""

    rows: int
    seq: int
    images: int
    patches: int
    scored: int  # tokens the LM head is applied to, over all rows (TRL on CUDA: labelled tokens only)


@dataclass
class StepFlops:
    """Forward, backward (input gradients where they flow, weight gradients of the adapters) and reference forward."""

    forward: int
    backward: int
    reference: int = 0  # DPO with PEFT: the adapter-disabled forward of the same rows

    @property
    def total(self) -> int:
        """Model FLOPs of the step (activation recomputation not counted: that is hardware FLOPs, not model FLOPs)."""
        return self.forward + self.backward + self.reference


def _rows(name: str, shape: StepShape, latents: int, merge: int) -> int:
    """How many vectors the linear layer `name` is applied to in one step."""
    if name.endswith("lm_head"):
        return shape.scored
    if re.search(r"\.(visual\.blocks|vision_model\.encoder|modality_projection)\.", name):
        return shape.images * shape.patches
    if ".visual.merger." in name:
        return shape.images * shape.patches // merge**2  # merge x merge patches become one token
    if ".perceiver_resampler." in name:  # latents query; keys and values also see the image's patches
        per_image = latents + shape.patches if re.search(r"\.(k|v)_proj$", name) else latents
        return shape.images * per_image
    return shape.rows * shape.seq  # the language model


BOTTOM_QKV = re.compile(r"(encoder\.layers|visual\.blocks|language_model\.layers|text_model\.layers)\.0\."
                        r"(self_)?attn\.(q_proj|k_proj|v_proj|qkv)$")


def _stack(name: str) -> str:
    """Which part of the model a layer belongs to: "text" (language model and head) or "vision" (tower, connector)."""
    return "text" if re.search(r"(language_model|text_model)\.|lm_head$", name) else "vision"


def _attention(config: Any, shape: StepShape) -> dict[str, tuple[int, int]]:
    """Forward FLOPs of attention per stack, (lowest layer, all layers): QK^T and AV, 2 FLOPs a multiply-add."""
    text = config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    layer = 4 * shape.rows * shape.seq**2 * text.num_attention_heads * head_dim
    out = {"text": (layer, layer * text.num_hidden_layers)}
    v = config.vision_config
    if config.model_type == "qwen2_vl":  # full attention within each image
        layer = 4 * shape.images * shape.patches**2 * v.embed_dim
        out["vision"] = (layer, layer * v.depth)
    else:  # idefics2: SigLIP over the patches, then the perceiver's latents over patches + latents
        p = config.perceiver_config
        layer = 4 * shape.images * shape.patches**2 * v.hidden_size
        latents = p.resampler_n_latents
        perceiver = 4 * shape.images * latents * (shape.patches + latents) * p.resampler_n_heads * p.resampler_head_dim
        out["vision"] = (layer, layer * v.num_hidden_layers + perceiver * p.resampler_depth)
    return out


def _bottom_attention_backward(one_layer: int, adapted: set[str], bottom: str) -> int:
    """Backward of the lowest layer's attention: dP = dO V^T (if q or k needs it), then dV, dQ, dK where adapted."""
    lowest = [n for n in adapted if _stack(n) == bottom and BOTTOM_QKV.search(n)]
    q, k, v = (any(n.endswith((x, ".qkv")) for n in lowest) for x in ("q_proj", "k_proj", "v_proj"))
    return one_layer // 2 * ((q or k) + v + q + k)


def training_flops(config: Any, lora_config: Any, shape: StepShape, reference: bool = False) -> StepFlops:
    """Model FLOPs of one step: the forward, and the backward autograd needs (eager attention; no recomputation).

    Gradients start at the lowest adapted layer: a frozen vision tower gets no backward, and the lowest adapted layer's
    q/k/v projections get no input gradient (their input is frozen). TRL's `enable_input_require_grads` (with activation
    checkpointing) makes a frozen vision tower run a backward too: hardware work, not model FLOPs.
    """
    config = load_config(config)
    model = meta_model(config, lora_config)
    latents = getattr(getattr(config, "perceiver_config", None), "resampler_n_latents", 0)
    merge = getattr(config.vision_config, "spatial_merge_size", 1)
    adapted = {n.removesuffix(".lora_A.default") for n, _ in model.named_modules() if n.endswith(".lora_A.default")}
    trains = {stack: any(_stack(n) == stack for n in adapted) for stack in ("text", "vision")}
    bottom = "vision" if trains["vision"] else "text"  # the stack whose first layer reads only frozen inputs
    adapter = backward = frozen = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Conv3d):  # patch embedding: frozen, its input is pixels
            frozen += 2 * shape.images * shape.patches * module.out_channels * module.weight[0].numel()
            continue
        if not isinstance(module, nn.Linear) or ".lora_" in name:
            continue
        layer = name.removesuffix(".base_layer")
        rows = _rows(layer, shape, latents, merge)
        base = 2 * rows * module.in_features * module.out_features
        frozen += base
        stack = _stack(layer)
        flows = ((stack == "text" or trains["vision"]) and not (stack == bottom and BOTTOM_QKV.search(layer))
                 and not layer.endswith("perceiver_resampler.layers.0.self_attn.q_proj"))  # reads the frozen latents
        backward += base if flows else 0  # the gradient to the input; frozen weights get none
        if layer in adapted:
            a, b = 2 * rows * module.in_features * lora_config.r, 2 * rows * lora_config.r * module.out_features
            adapter += a + b
            backward += b + b + a + (a if flows else 0)  # dB, B's input gradient, dA, A's input gradient
    for stack, (one, every) in _attention(config, shape).items():
        frozen += every
        if trains["vision"] or stack == "text":
            lowest = _bottom_attention_backward(one, adapted, bottom) if stack == bottom else 2 * one
            backward += lowest + 2 * (every - one)
    return StepFlops(frozen + adapter, backward, frozen if reference else 0)


def mfu(flops_per_second: float, device_name: str) -> float | None:
    """Model FLOPs utilisation against the device's dense bf16 peak; None for a device without a known peak."""
    peak = next((v for k, v in PEAK_BF16.items() if k in device_name), None)
    return flops_per_second / peak if peak else None
