"""The model-swap matrix, the one table of it: per model, the recipe lines that change (the image budget as processor
options and image-processor settings, LoRA targets, dtype), why, and the largest image the budget lets through (for
`matrix_budget`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

# The language model's attention q/v projections only. The SigLIP towers of idefics2, Gemma 3 and SmolVLM2 (and
# idefics2's perceiver) also name projections `q_proj`/`v_proj`, so the plain list would put adapters on them too;
# the Qwen vision towers use a fused `qkv`, so for them the list and this pattern pick the same modules.
LM_QV = r".*(language_model|text_model)\.layers\.\d+\.self_attn\.(q_proj|v_proj)"
QWEN_QV = ["q_proj", "v_proj"]
SEEDS = ("Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b")  # the models notebooks 03 and 04 train


def literal(value: Any) -> str:
    """`value` as Python source: dictionaries with double-quoted keys, as the recipes write them; digits grouped."""
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}": {literal(v)}' for k, v in value.items()) + "}"
    return f"{value:_}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


@dataclass(frozen=True)
class Swap:
    """What the SFT/DPO recipes set for one model."""

    family: str  # "qwen": pixel bounds; "idefics": image splitting; "gemma3": fixed size
    largest: tuple[int, int]  # (height, width) of the largest image the budget lets through
    image_attributes: dict[str, Any] = field(default_factory=dict)  # what the recipe sets on its loaded image processor
    image_note: str = ""  # what the image settings mean, printed as a comment beside them
    processor_kwargs: dict[str, Any] = field(default_factory=dict)  # AutoProcessor.from_pretrained(..., **these)
    template_line: str = ""  # a line the recipe runs on the loaded processor's chat template, copyable as is
    lora_targets: list[str] | str = LM_QV
    dtype: str = "bfloat16"  # load dtype on an A100 (Ampere or newer); passed explicitly, never "auto"
    why: str = ""

    @property
    def image_settings(self) -> dict[str, Any]:
        """`image_attributes`, a fresh copy each time: a processor may change a dict it is given (Qwen's
        `from_pretrained(size=...)` writes the hub file's `max_pixels` into it)."""
        return copy.deepcopy(self.image_attributes)

    @property
    def image_budget(self) -> str:
        """The lines that set `image_attributes` on a loaded processor, copyable as is, with `image_note` beside them."""
        lines = [f"processor.image_processor.{key} = {literal(value)}" for key, value in self.image_attributes.items()]
        if not lines:
            return f"# nothing to set: {self.image_note}" if self.image_note else ""
        return "\n".join(lines) + (f"  # {self.image_note}" if self.image_note else "")

    @property
    def image_options(self) -> dict[str, Any]:
        """The same image budget as keywords of `helpers.vision.image_tokens` (`max_pixels`, `do_image_splitting`)."""
        options = {**self.processor_kwargs, **self.image_attributes}
        out = {"max_pixels": options["size"]["longest_edge"]} if self.family == "qwen" else {}
        return out | ({"do_image_splitting": options["do_image_splitting"]} if "do_image_splitting" in options else {})

    @property
    def kwargs_text(self) -> str:
        """`processor_kwargs` as the tail of a call: `, do_image_splitting=False`."""
        return "".join(f", {k}={v!r}" for k, v in self.processor_kwargs.items())

    @property
    def budget_line(self) -> str:
        """The image-budget code in one line: the options the processor is loaded with and the line run on it."""
        loading = f"AutoProcessor.from_pretrained(model_id{self.kwargs_text})" if self.processor_kwargs else ""
        return "; ".join(part for part in (loading, self.image_budget) if part)


# Qwen: one token per 28x28 px (Qwen3-VL: 32x32), the image scaled to between 4 and 1,024 tokens' worth of pixels.
QWEN_CAP = {"size": {"shortest_edge": 56 * 56, "longest_edge": 1024 * 28 * 28}}
QWEN_NOTE = "56 * 56 to 1024 * 28 * 28 px: at most 1,024 image tokens"
MODELS: dict[str, Swap] = {
    "Qwen/Qwen2-VL-7B-Instruct": Swap(
        "qwen", (896, 896), QWEN_CAP, QWEN_NOTE, lora_targets=QWEN_QV,
        why="one token per 28x28 px (patch 14, merge 2), at most 1,024; the model notebook 03 fine-tunes"),
    "HuggingFaceM4/idefics2-8b": Swap(
        "idefics", (980, 980), processor_kwargs={"do_image_splitting": False},
        template_line='processor.chat_template = "{{ bos_token }}" + processor.chat_template',
        why="64 tokens an image; splitting makes 5 crops (320 tokens); the template lacks the <s> the tokenizer adds "
            "and TRL tokenizes the rendered template without special tokens, so the template gets it"),
    # Qwen2.5-VL: the hub file's min_pixels/max_pixels load into these `size` keys and override a `size=` argument of
    # from_pretrained (as on Qwen2-VL), so the cap is set on the loaded processor
    "Qwen/Qwen2.5-VL-7B-Instruct": Swap(
        "qwen", (896, 896), QWEN_CAP, QWEN_NOTE, lora_targets=QWEN_QV,
        why="same processor class and 28-px tokens as Qwen2-VL; windowed vision attention"),
    "Qwen/Qwen3-VL-4B-Instruct": Swap(
        "qwen", (1024, 1024), {"size": {"shortest_edge": 256 * 256, "longest_edge": 1024 * 32 * 32}},
        "256 * 256 to 1024 * 32 * 32 px: at most 1,024 image tokens", lora_targets=QWEN_QV,
        why="one token per 32x32 px (patch 16, merge 2): the same 1,024-token cap is more pixels"),
    "google/gemma-3-4b-it": Swap(
        "gemma3", (896, 896), image_note="every image becomes 896x896, 256 tokens (do_pan_and_scan stays off)",
        why="needs token_type_ids (TRL's collators add them); the template writes the BOS itself"),
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": Swap(
        "idefics", (1536, 1536), {"do_image_splitting": True}, "the hub's: longest edge 1536 px, 384-px crops",
        why="small enough to keep its splitting (81 tokens a crop, plus the whole image); the hub weights are float32, "
            "so dtype='auto' would double the memory"),
}


def swap_for(hub_id: str) -> Swap:
    """The matrix row of `hub_id`; other Qwen ids (Qwen2-VL-2B) get Qwen2-VL's, anything else idefics2's."""
    if hub_id in MODELS:
        return MODELS[hub_id]
    return MODELS["Qwen/Qwen2-VL-7B-Instruct" if "qwen" in hub_id.lower() else "HuggingFaceM4/idefics2-8b"]


def recipe_lines(hub_id: str) -> str:
    """The lines of notebooks 03/04 that a swap to `hub_id` changes, as code to copy."""
    swap = MODELS[hub_id]
    targets = f'r"{swap.lora_targets}"' if isinstance(swap.lora_targets, str) else repr(swap.lora_targets)
    lines = [f'model_id = "{hub_id}"', f"processor = AutoProcessor.from_pretrained(model_id{swap.kwargs_text})",
             swap.image_budget, swap.template_line, f"target_modules = {targets}  # LoraConfig(..., target_modules=target_modules)",
             f"dtype = torch.{swap.dtype}  # AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype, ...)"]
    return "\n".join(line for line in lines if line)


def image_tokens(processor: Any, width: int = 800, height: int = 600) -> int:
    """Image placeholder tokens (each replaced by one image feature) the processor makes of one `width`x`height` image."""
    from PIL import Image

    token_id = getattr(processor.tokenizer, "image_token_id", None) or processor.image_token_id  # Gemma 3: soft token
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}]
    text = processor.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    ids = processor(text=[text], images=[[Image.new("RGB", (width, height))]], add_special_tokens=False)["input_ids"]
    return list(ids[0]).count(token_id)
