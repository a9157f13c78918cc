"""What a model weighs: exact parameter counts (meta device); weight bytes in bf16 or NF4, predicted and loaded."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForImageTextToText, PretrainedConfig

GIB = 2**30
CONFIG_DIR = Path(__file__).resolve().parent.parent / "data_samples" / "configs"  # hub files shipped with the cookbook
# The real hub configs ship in data_samples/configs, so budgets are the same offline and on Colab.
SHIPPED_CONFIGS = {
    "Qwen/Qwen2-VL-7B-Instruct": "qwen2-vl-7b-instruct.config.json",
    "Qwen/Qwen2-VL-2B-Instruct": "qwen2-vl-2b-instruct.config.json",
    "HuggingFaceM4/idefics2-8b": "idefics2-8b.config.json",
    # The model-swap matrix: hub files in data_samples/configs/matrix/<owner>__<name>/ (sources in its SOURCES.md).
    **{hub_id: f"matrix/{hub_id.replace('/', '__')}/config.json" for hub_id in (
        "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "google/gemma-3-4b-it",
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct")},
}


def load_config(config: str | Path | PretrainedConfig) -> PretrainedConfig:
    """A config from a `config.json` path, a `PretrainedConfig`, or a hub id (shipped copies first)."""
    if isinstance(config, PretrainedConfig):
        return config
    if str(config) in SHIPPED_CONFIGS:
        config = CONFIG_DIR / SHIPPED_CONFIGS[str(config)]
    path = Path(config)
    if path.suffix == ".json" and path.is_file():
        cfg_dict = PretrainedConfig.get_config_dict(str(path))[0]
        return AutoConfig.for_model(**cfg_dict)
    return AutoConfig.from_pretrained(str(config))


def meta_model(config: str | Path | PretrainedConfig, lora_config: Any = None) -> nn.Module:
    """The model built on the `meta` device (shapes only, no memory), with LoRA injected when given."""
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(load_config(config))
        if lora_config is not None:
            from peft import get_peft_model

            with warnings.catch_warnings():  # peft asks `is_gradient_checkpointing`, deprecated in transformers 5.23
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
                model = get_peft_model(model, copy.deepcopy(lora_config))
    return model


def parameter_counts(config: str | Path | PretrainedConfig, lora_config: Any = None) -> dict[str, int]:
    """Exact `total` and `trainable` parameter counts (tied weights once); all are trainable without LoRA."""
    model = meta_model(config, lora_config)
    params = list(model.parameters())  # parameters() yields a tied weight once
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad) if lora_config is not None else total
    return {"total": total, "trainable": trainable}


def format_trainable(counts: dict[str, int]) -> str:
    """The counts as peft's `print_trainable_parameters` prints them."""
    t, n = counts["trainable"], counts["total"]
    return f"trainable params: {t:,} || all params: {n:,} || trainable%: {100 * t / n:.4f}"


def nf4_bytes(numel: int, double_quant: bool = True, blocksize: int = 64) -> int:
    """Bytes of one bitsandbytes 4-bit weight: packed nibbles, absmax per block, the 16-value code, quant states."""
    blocks = math.ceil(numel / blocksize)
    if double_quant:  # absmax in 8 bits + fp32 offset; the absmax of those per 256 blocks + a 256-entry fp32 code
        return (numel + 1) // 2 + blocks + 4 + 4 * math.ceil(blocks / 256) + 256 * 4 + 16 * 4
    return (numel + 1) // 2 + 4 * blocks + 16 * 4


def quantized_linears(model: nn.Module) -> dict[str, int]:
    """The `nn.Linear` layers bitsandbytes quantizes on loading (transformers' own skip rules), name -> numel."""
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    skip = get_keys_to_not_convert(model) + list(getattr(model, "_keep_in_fp32_modules", None) or [])
    return {name: m.weight.numel() for name, m in model.named_modules()
            if type(m) is nn.Linear and should_convert_module(name, skip)}


def weight_bytes(config: str | Path | PretrainedConfig | nn.Module, dtype: torch.dtype = torch.bfloat16,
                 load_in_4bit: bool = False, double_quant: bool = True) -> int:
    """Predicted bytes of the loaded model: parameters in `dtype` (or NF4), fp32 buffers, 4-bit quant states.

    `config` may also be a model already built by `meta_model(config)` (no LoRA), to avoid building it again.
    """
    model = config if isinstance(config, nn.Module) else meta_model(config)
    quantized = quantized_linears(model) if load_in_4bit else {}
    quantized_ids = {id(model.get_submodule(n).weight) for n in quantized}
    size = torch.finfo(dtype).bits // 8
    total = sum(p.numel() * size for p in model.parameters() if id(p) not in quantized_ids)
    total += sum(nf4_bytes(n, double_quant) for n in quantized.values())
    return total + sum(b.numel() * b.element_size() for b in model.buffers())


def model_bytes(model: nn.Module) -> int:
    """Measured bytes of a loaded model: every distinct storage of its parameters, buffers and 4-bit quant states."""
    tensors = [*model.parameters(), *model.buffers()]
    for p in model.parameters():
        state = getattr(p, "quant_state", None)
        if state is not None:
            tensors += [state.absmax, state.code, state.offset] if state.nested else [state.absmax, state.code]
            if state.nested:
                tensors += [state.state2.absmax, state.state2.code]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t is not None}
    return sum(storages.values())

