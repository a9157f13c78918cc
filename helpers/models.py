"""The model-swap matrix: per model, the recipe lines that change (image budget, LoRA targets, dtype) and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The language model's attention q/v projections only. The SigLIP towers of idefics2, Gemma 3 and SmolVLM2 (and
# idefics2's perceiver) also name projections `q_proj`/`v_proj`, so the plain list would put adapters on them too;
# the Qwen vision towers use a fused `qkv`, so for them the list and this pattern pick the same modules.
LM_QV = r".*(language_model|text_model)\.layers\.\d+\.self_attn\.(q_proj|v_proj)"


@dataclass(frozen=True)
class Swap:
    """What the SFT/DPO recipes set for one model."""

    family: str  # "qwen": pixel bounds; "idefics": image splitting; "gemma3": fixed size
    image_budget: str  # how the recipe bounds the image tokens, in the words of the processor
    processor_kwargs: dict[str, Any] = field(default_factory=dict)  # AutoProcessor.from_pretrained(..., **these)
    lora_targets: list[str] | str = LM_QV
    dtype: str = "bfloat16"  # load dtype on an A100 (Ampere or newer); passed explicitly, never "auto"
    why: str = ""


QWEN_QV = ["q_proj", "v_proj"]
MODELS: dict[str, Swap] = {
    "Qwen/Qwen2-VL-7B-Instruct": Swap(
        "qwen", "processor.image_processor.size = {'shortest_edge': 56 * 56, 'longest_edge': 1024 * 28 * 28}",
        lora_targets=QWEN_QV, why="one token per 28x28 px (patch 14, merge 2); the seed recipe's model"),
    "Qwen/Qwen2.5-VL-7B-Instruct": Swap(
        "qwen", "processor.image_processor.size = {'shortest_edge': 56 * 56, 'longest_edge': 1024 * 28 * 28}",
        lora_targets=QWEN_QV, why="same processor class and 28-px tokens as Qwen2-VL; windowed vision attention"),
    "Qwen/Qwen3-VL-4B-Instruct": Swap(
        "qwen", "processor.image_processor.size = {'shortest_edge': 256 * 256, 'longest_edge': 1024 * 32 * 32}",
        lora_targets=QWEN_QV, why="one token per 32x32 px (patch 16, merge 2): the same 1,024-token cap is more pixels"),
    "HuggingFaceM4/idefics2-8b": Swap(
        "idefics", "do_image_splitting=False (64 tokens an image)", {"do_image_splitting": False},
        why="splitting makes 5 crops (320 tokens); the template lacks the BOS the tokenizer adds (bos_in_template)"),
    "google/gemma-3-4b-it": Swap(
        "gemma3", "none: every image is resized to 896x896, 256 tokens (pan-and-scan stays off)",
        why="needs token_type_ids (TRL's collators add them); the template writes the BOS itself"),
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": Swap(
        "idefics", "none: the hub's splitting (longest edge 1,536 px, 384-px crops of 81 tokens, plus the whole image)",
        why="small enough to keep its splitting; the hub weights are float32, so dtype='auto' would double the memory"),
}


def swap_for(hub_id: str) -> Swap:
    """The matrix row of `hub_id`; other Qwen ids (Qwen2-VL-2B) get Qwen2-VL's, anything else idefics2's."""
    if hub_id in MODELS:
        return MODELS[hub_id]
    return MODELS["Qwen/Qwen2-VL-7B-Instruct" if "qwen" in hub_id.lower() else "HuggingFaceM4/idefics2-8b"]


def image_tokens(processor: Any, width: int = 800, height: int = 600) -> int:
    """Image placeholder tokens (each replaced by one image feature) the processor makes of one `width`x`height` image."""
    from PIL import Image

    token_id = getattr(processor.tokenizer, "image_token_id", None) or processor.image_token_id  # Gemma 3: soft token
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}]
    text = processor.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    ids = processor(text=[text], images=[[Image.new("RGB", (width, height))]], add_special_tokens=False)["input_ids"]
    return list(ids[0]).count(token_id)
