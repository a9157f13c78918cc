"""The model-swap matrix's budget rows, computed from `helpers.models.MODELS`: exact parameter count, image tokens of
an 800x600 chart, predicted SFT-QLoRA and DPO-LoRA peaks of the recipes, and the terms the estimate lacks."""

from __future__ import annotations

import functools
from typing import Any

from helpers.budget import MemoryEstimate, estimate_training_memory
from helpers.weights import GIB, load_config, parameter_counts
from helpers.models import MODELS
from helpers.vision import image_tokens

# Notebook 03's SFT adapter (its q/v targets replaced by each row's `lora_targets`) and notebook 04's DPO adapter.
SFT_LORA = dict(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
DPO_LORA = dict(r=8, lora_alpha=8, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
# Notebook 03's ChartQA step and notebook 04's RLAIF-V step, both at batch 4.
SFT_STEP = dict(method="qlora", batch_size=4, text_tokens=60, scored_tokens=4)
DPO_STEP = dict(method="lora", batch_size=4, text_tokens=180, scored_tokens=150, dpo=True)
CHART = (600, 800)  # (height, width) of a typical ChartQA chart


def sft_lora(hub_id: str) -> dict[str, Any]:
    """Notebook 03's LoRA settings with the row's targets (the language model's q/v on every model)."""
    return {**SFT_LORA, "target_modules": MODELS[hub_id].lora_targets}


def chart_tokens(hub_id: str, size: tuple[int, int] = CHART) -> int:
    """Image tokens the language model sees for one chart of `size` under the recipe's image budget."""
    return image_tokens(load_config(hub_id), *size, **MODELS[hub_id].image_options)[0]


@functools.cache
def recipe_estimates(hub_id: str) -> tuple[MemoryEstimate, MemoryEstimate]:
    """The SFT-QLoRA and DPO-LoRA estimates of one matrix model at the largest image its budget allows."""
    from peft import LoraConfig

    swap = MODELS[hub_id]
    step = dict(image_size=swap.largest, **swap.image_options)
    return (estimate_training_memory(hub_id, lora_config=LoraConfig(**sft_lora(hub_id)), **SFT_STEP, **step),
            estimate_training_memory(hub_id, lora_config=LoraConfig(**DPO_LORA), **DPO_STEP, **step))


@functools.cache
def matrix_rows() -> tuple[dict[str, Any], ...]:
    """Per model: exact parameter count, image tokens of an 800x600 chart, the image-budget line, predicted SFT-QLoRA
    and DPO-LoRA peaks (GiB allocated, the CUDA context not included) at the largest image, and the terms left out."""
    rows = []
    for hub_id, swap in MODELS.items():
        sft, dpo = recipe_estimates(hub_id)
        rows.append({"model": hub_id, "parameters": parameter_counts(hub_id)["total"],
                     "image_tokens_800x600": chart_tokens(hub_id), "image_budget": swap.budget_line,
                     "sft_qlora_gib": sft.peak / GIB, "dpo_lora_gib": dpo.peak / GIB,
                     "lacks": sorted(sft.lacks)})  # one list per architecture
    return tuple(rows)
