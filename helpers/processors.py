"""The cookbook's processor settings: Qwen's image-token cap, idefics2's sequence start, the end-of-turn token."""

from __future__ import annotations

from typing import Any

from transformers import AutoProcessor

from helpers.models import swap_for
from helpers.vision import CHARTQA_MAX_PIXELS, QWEN2VL_FACTOR, QWEN2VL_MIN_PIXELS

SENTINEL = "\x00ANSWER\x00"


def cap_image_tokens(processor: Any, max_pixels: int = CHARTQA_MAX_PIXELS, min_pixels: int = QWEN2VL_MIN_PIXELS) -> Any:
    """Bound a loaded Qwen-family processor's images to `[min_pixels, max_pixels]` (a token per 28x28 or 32x32 px).

    Set on the loaded image processor because the hub's `preprocessor_config.json` keeps top-level `min_pixels` /
    `max_pixels`, which override a `size=` argument of `from_pretrained` (silently, in transformers 5.23), while
    `max_pixels=` there works but routes the cap through a call-time argument transformers has deprecated.
    """
    processor.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    return processor


def bos_in_template(processor: Any) -> Any:
    """Start the chat template with the tokenizer's BOS when the tokenizer adds one but the template does not; return it.

    TRL renders the template and tokenizes it with `add_special_tokens=False`, so a BOS that only the tokenizer adds
    (idefics2: `<s>`, as on its model card) never reaches training. Written into the template, training and generation
    (which tokenizes the same way, `helpers.generation`) both start with it.
    """
    tokenizer = processor.tokenizer
    adds_bos = tokenizer.bos_token is not None and tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]
    if adds_bos and "bos_token" not in processor.chat_template:
        processor.chat_template = "{{ bos_token }}" + processor.chat_template
    return processor


def end_of_turn_id(processor: Any) -> int | None:
    """The special token the chat template closes an assistant turn with (`<|im_end|>`, `<end_of_utterance>`), if any."""
    turn = [{"role": "user", "content": [{"type": "text", "text": "?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": SENTINEL}]}]
    after = processor.apply_chat_template(turn, tokenize=False).split(SENTINEL, 1)[1]
    ids = processor.tokenizer(after, add_special_tokens=False).input_ids
    special = set(processor.tokenizer.all_special_ids)
    return ids[0] if ids and ids[0] in special else None


def load_processor(hub_id: str, max_pixels: int = CHARTQA_MAX_PIXELS) -> Any:
    """The recipes' processor for `hub_id` as `helpers.models.MODELS` sets it: image budget, BOS in the template."""
    swap = swap_for(hub_id)
    processor = AutoProcessor.from_pretrained(hub_id, **swap.processor_kwargs)
    if swap.family != "qwen":
        for key, value in swap.image_settings.items():  # the row's image settings (SmolVLM2: its hub splitting, kept)
            setattr(processor.image_processor, key, value)
        return bos_in_template(processor)
    # `max_pixels` is in Qwen2-VL's 28-px tokens: the same token budget on Qwen3-VL's 32-px tokens is more pixels;
    # the lower bound stays the hub file's (Qwen2-VL and Qwen2.5-VL: 3,136 px; Qwen3-VL: 65,536 px)
    side = processor.image_processor.patch_size * processor.image_processor.merge_size
    return cap_image_tokens(processor, max_pixels * side**2 // QWEN2VL_FACTOR**2,
                            processor.image_processor.size["shortest_edge"])
