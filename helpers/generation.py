"""Batched greedy generation for the cookbook's VLM processors (left padding, images per prompt)."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from transformers import GenerationConfig


def greedy_config(model: Any, max_new_tokens: int) -> GenerationConfig:
    """A greedy `GenerationConfig` that keeps the model's stop tokens but none of its sampling settings."""
    gen = model.generation_config
    pad = gen.pad_token_id if gen.pad_token_id is not None else gen.eos_token_id
    return GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=gen.eos_token_id,
                            pad_token_id=pad[0] if isinstance(pad, list) else pad)


@torch.no_grad()
def generate(model: Any, processor: Any, prompts: list[list[dict]], images: list[list[Image.Image]],
             max_new_tokens: int = 16, batch_size: int = 8, padding_side: str = "left") -> list[str]:
    """Greedy answers to conversational `prompts` (one image list each), `batch_size` prompts per `generate` call.

    Left padding keeps every prompt's last token at the end of the row, where generation continues. The model is put
    in eval mode (dropout off), as after `trainer.train()` it is still in training mode.
    """
    model.eval()
    answers = []
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        texts = [processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts[chunk]]
        inputs = processor(text=texts, images=images[chunk], padding=True, padding_side=padding_side,
                           return_tensors="pt").to(model.device)
        out = model.generate(**inputs, generation_config=greedy_config(model, max_new_tokens))
        answers += processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [a.strip() for a in answers]
