"""The model-swap matrix: each model's hub id and the processor options its recipe sets for the image budget, and its
budget row (exact parameter count, image tokens of an 800x600 chart, predicted SFT-QLoRA and DPO-LoRA peaks)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from helpers.budget import MemoryEstimate, estimate_training_memory, image_tokens
from helpers.memory import GIB, load_config, parameter_counts

# Notebook 03's SFT adapter and notebook 04's DPO adapter (notebook 02 counts both).
SFT_LORA = dict(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
DPO_LORA = dict(r=8, lora_alpha=8, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
# Notebook 03's ChartQA step and notebook 04's RLAIF-V step, both at batch 4.
SFT_STEP = dict(method="qlora", batch_size=4, text_tokens=60, scored_tokens=4)
DPO_STEP = dict(method="lora", batch_size=4, text_tokens=180, scored_tokens=150, dpo=True)
CHART = (600, 800)  # (height, width) of a typical ChartQA chart


@dataclass(frozen=True)
class MatrixModel:
    """One model of the matrix and how its recipe bounds the image tokens."""

    hub_id: str
    new: bool  # False for the two models the seed recipes already use
    processor: str  # the line(s) the recipe runs on its loaded processor for the image budget
    largest: tuple[int, int]  # (height, width) of the largest image those options let through, for the budget
    options: dict[str, Any] = field(default_factory=dict)  # the same options as `image_tokens` keywords
    settings: dict[str, Any] = field(default_factory=dict)  # the attributes `processor` sets on the image processor

    @property
    def folder(self) -> str:
        """Where its hub files ship, under data_samples/configs/ (the seed models' flat files are elsewhere)."""
        return f"matrix/{self.hub_id.replace('/', '__')}"


MATRIX = (
    MatrixModel("Qwen/Qwen2-VL-7B-Instruct", False,
                'processor.image_processor.size = {"shortest_edge": 56 * 56, "longest_edge": 1024 * 28 * 28}',
                (896, 896), {"max_pixels": 1024 * 28 * 28}, {"size": {"shortest_edge": 56 * 56,
                                                                      "longest_edge": 1024 * 28 * 28}}),
    MatrixModel("HuggingFaceM4/idefics2-8b", False,
                'AutoProcessor.from_pretrained(model_id, do_image_splitting=False)',
                (980, 980), {"do_image_splitting": False}, {"do_image_splitting": False}),
    # Qwen2.5-VL: the hub file's min_pixels/max_pixels load into these `size` keys and override a `size=` argument
    # of from_pretrained (as on Qwen2-VL), so the cap is set on the loaded processor
    MatrixModel("Qwen/Qwen2.5-VL-7B-Instruct", True,
                'processor.image_processor.size = {"shortest_edge": 56 * 56, "longest_edge": 1024 * 28 * 28}',
                (896, 896), {"max_pixels": 1024 * 28 * 28}, {"size": {"shortest_edge": 56 * 56,
                                                                      "longest_edge": 1024 * 28 * 28}}),
    MatrixModel("Qwen/Qwen3-VL-4B-Instruct", True,  # 16-px patches: a token covers 32x32 px
                'processor.image_processor.size = {"shortest_edge": 256 * 256, "longest_edge": 1024 * 32 * 32}',
                (1024, 1024), {"max_pixels": 1024 * 32 * 32}, {"size": {"shortest_edge": 256 * 256,
                                                                        "longest_edge": 1024 * 32 * 32}}),
    MatrixModel("google/gemma-3-4b-it", True,  # every image is resized to 896x896: 256 tokens, nothing to cap
                "(none: do_pan_and_scan stays False)", (896, 896)),
    MatrixModel("HuggingFaceTB/SmolVLM2-2.2B-Instruct", True,  # the hub defaults: longest edge 1536 px, 384-px crops
                'processor.image_processor.do_image_splitting = True  # size {"longest_edge": 1536}, max_image_size 384',
                (1536, 1536), {"do_image_splitting": True}, {"do_image_splitting": True}),
)


def chart_tokens(spec: MatrixModel, size: tuple[int, int] = CHART) -> int:
    """Image tokens the language model sees for one chart of `size` under the recipe's processor options."""
    return image_tokens(load_config(spec.hub_id), *size, **spec.options)[0]


@functools.cache
def recipe_estimates(hub_id: str) -> tuple[MemoryEstimate, MemoryEstimate]:
    """The SFT-QLoRA and DPO-LoRA estimates of one matrix model at the largest image its options allow."""
    from peft import LoraConfig

    spec = next(s for s in MATRIX if s.hub_id == hub_id)
    step = dict(image_size=spec.largest, **spec.options)
    return (estimate_training_memory(hub_id, lora_config=LoraConfig(**SFT_LORA), **SFT_STEP, **step),
            estimate_training_memory(hub_id, lora_config=LoraConfig(**DPO_LORA), **DPO_STEP, **step))


@functools.cache
def matrix_rows() -> tuple[dict[str, Any], ...]:
    """Per model: exact parameter count, image tokens of an 800x600 chart, predicted SFT-QLoRA and DPO-LoRA peaks
    (GiB allocated, the CUDA context not included) at the largest image the options allow, and the terms left out."""
    rows = []
    for spec in MATRIX:
        sft, dpo = recipe_estimates(spec.hub_id)
        rows.append({"model": spec.hub_id, "parameters": parameter_counts(spec.hub_id)["total"],
                     "image_tokens_800x600": chart_tokens(spec), "sft_qlora_gib": sft.peak / GIB,
                     "dpo_lora_gib": dpo.peak / GIB, "lacks": sorted(set(sft.lacks) | set(dpo.lacks))})
    return tuple(rows)
