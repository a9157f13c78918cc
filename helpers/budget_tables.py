"""What the memory budget knows per architecture: layer stacks, LoRA targets per training kind, measured activation
bytes per token, and the terms it does not model (each estimate reports them)."""

from __future__ import annotations

_ALL_TEXT = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_TEXT = {"qv": ("q_proj", "v_proj"), "all-linear": _ALL_TEXT, "full": ()}
# SigLIP-style encoders (idefics2, Gemma 3, SmolVLM2): q/v LoRA (notebook 03's targets) lands in them too.
_SIGLIP = {"frozen": (), "qv": ("q_proj", "v_proj"),
           "all-linear": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"), "full": ()}
# The LoRA targets inside one layer of each stack, per kind of training the recipes use.
LORA_KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "Qwen2VLDecoderLayer": _TEXT, "MistralDecoderLayer": _TEXT, "Qwen2_5_VLDecoderLayer": _TEXT,
    "Qwen3VLTextDecoderLayer": _TEXT, "Gemma3DecoderLayer": _TEXT, "LlamaDecoderLayer": _TEXT,
    "Qwen2VLVisionBlock": {"frozen": (), "all-linear": ("qkv", "proj", "fc1", "fc2"), "full": ()},
    "Qwen2_5_VLVisionBlock": {"frozen": (), "all-linear": ("qkv", "proj", "gate_proj", "up_proj", "down_proj"),
                              "full": ()},  # SwiGLU MLP
    "Qwen3VLVisionBlock": {"frozen": (), "all-linear": ("qkv", "proj", "linear_fc1", "linear_fc2"), "full": ()},
    "Idefics2EncoderLayer": _SIGLIP, "SiglipEncoderLayer": _SIGLIP, "SmolVLMEncoderLayer": _SIGLIP,
}
# "layer/kind@width" -> (saved, peak) bytes per token of one layer: bf16 autocast, LoRA r=8 in fp32, SDPA attention.
# Measured at the real widths by benchmarks/activation_probe.py (torch 2.14.1, transformers 5.23.0, peft 0.21.2, CPU,
# 64 tokens); other widths (the tiny models) are measured on first use.
LAYER_ACTIVATIONS: dict[str, tuple[int, int]] = {
    "Qwen2VLDecoderLayer/qv@3584": (204696, 332696),
    "Qwen2VLDecoderLayer/all-linear@3584": (424168, 634217),
    "Qwen2VLVisionBlock/frozen@1280": (0, 41600),
    "Qwen2VLVisionBlock/all-linear@1280": (98056, 154056),
    "MistralDecoderLayer/qv@4096": (191912, 294312),
    "MistralDecoderLayer/all-linear@4096": (393464, 560377),
    "Idefics2EncoderLayer/frozen@1152": (0, 21824),
    "Idefics2EncoderLayer/all-linear@1152": (85712, 133073),
    # Full fine-tuning: the weight gradients swamp the per-token peak at 64 tokens; the saved bytes bound it instead.
    "Qwen2VLDecoderLayer/full@3584": (225400, 225400),
    "Qwen2VLVisionBlock/full@1280": (57032, 57032),
    "MistralDecoderLayer/full@4096": (200840, 200840),
    "Idefics2EncoderLayer/full@1152": (33416, 33416),
    # The model-swap matrix (same probe, same versions); no "full" rows: its recipes are QLoRA and LoRA.
    "Qwen2_5_VLDecoderLayer/qv@3584": (204696, 332696),
    "Qwen2_5_VLDecoderLayer/all-linear@3584": (424168, 638371),
    "Qwen2_5_VLVisionBlock/frozen@1280": (0, 41600),
    "Qwen2_5_VLVisionBlock/all-linear@1280": (103597, 149312),
    "Qwen3VLTextDecoderLayer/qv@2560": (153416, 222024),
    "Qwen3VLTextDecoderLayer/all-linear@2560": (294296, 410451),
    "Qwen3VLVisionBlock/frozen@1024": (0, 33280),
    "Qwen3VLVisionBlock/all-linear@1024": (70280, 119234),
    "Gemma3DecoderLayer/qv@2560": (160544, 221820),
    "Gemma3DecoderLayer/all-linear@2560": (292080, 402951),
    "SiglipEncoderLayer/frozen@1152": (0, 21824),
    "SiglipEncoderLayer/qv@1152": (35208, 57032),
    "SiglipEncoderLayer/all-linear@1152": (85712, 137227),
    "LlamaDecoderLayer/qv@2048": (108712, 166056),
    "LlamaDecoderLayer/all-linear@2048": (216824, 314675),
    "SmolVLMEncoderLayer/frozen@1152": (0, 21824),
    "SmolVLMEncoderLayer/qv@1152": (35208, 57032),
    "SmolVLMEncoderLayer/all-linear@1152": (85712, 137227),
}
# model_type -> the layer stacks (path, modality) whose activations scale with tokens.
STACKS = {
    "qwen2_vl": (("model.visual.blocks", "vision"), ("model.language_model.layers", "text")),
    "idefics2": (("model.vision_model.encoder.layers", "vision"), ("model.text_model.layers", "text")),
    "qwen2_5_vl": (("model.visual.blocks", "vision"), ("model.language_model.layers", "text")),
    "qwen3_vl": (("model.visual.blocks", "vision"), ("model.language_model.layers", "text")),
    "gemma3": (("model.vision_tower.encoder.layers", "vision"), ("model.language_model.layers", "text")),
    "smolvlm": (("model.vision_model.encoder.layers", "vision"), ("model.text_model.layers", "text")),
}
# model_type -> what the estimate leaves out; small next to the stacks, but said rather than silently omitted.
LACKS: dict[str, tuple[str, ...]] = {
    "qwen2_vl": ("patch-merger activations",),
    "idefics2": ("connector MLP and perceiver-resampler activations",),
    "qwen2_5_vl": ("patch-merger activations", "window attention probed as full attention (both linear per token)"),
    "qwen3_vl": ("patch-merger and 3 deepstack-merger activations",
                 "deepstack features kept for the first 3 text layers"),
    "gemma3": ("avg-pool projector activations",),
    "smolvlm": ("pixel-shuffle connector activations", "row/column marker tokens (~2 per crop), counted as text"),
}
