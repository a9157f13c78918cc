"""Batched greedy generation for the cookbook's VLM processors (left padding, images per prompt)."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from transformers import GenerationConfig

from helpers.processors import end_of_turn_id


def greedy_config(model: Any, processor: Any, max_new_tokens: int) -> GenerationConfig:
    """Plain greedy decoding that stops at the model's EOS tokens and at the template's end of turn.

    transformers fills every field left unset from the checkpoint's `generation_config.json` (Qwen2-VL-Instruct's
    samples: `do_sample`, temperature, top_p, top_k), so each field that could change the argmax is set here. Kept
    from the file: its stop tokens and `bad_words_ids` (idefics2 forbids its image placeholders in answers).
    """
    gen = model.generation_config
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    turn = end_of_turn_id(processor)  # idefics2's hub generation_config stops only at </s>
    stops = [t for t in dict.fromkeys([*eos, turn]) if t is not None]
    pad = processor.tokenizer.pad_token_id if processor.tokenizer.pad_token_id is not None else stops[0]
    return GenerationConfig(do_sample=False, num_beams=1, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                            no_repeat_ngram_size=0, suppress_tokens=[], begin_suppress_tokens=[],
                            max_new_tokens=max_new_tokens, eos_token_id=stops, pad_token_id=pad)


def batch_inputs(processor: Any, prompts: list[list[dict]], images: list[list[Image.Image]],
                 padding_side: str = "left") -> Any:
    """Processor inputs for a batch of conversational prompts, padded on `padding_side`, with the generation prompt.

    Tokenized as TRL's trainers tokenize (the template alone supplies special tokens), so a prompt here is token for
    token the prompt the model was trained on.
    """
    texts = [processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    return processor(text=texts, images=images, padding=True, padding_side=padding_side, return_tensors="pt",
                     add_special_tokens=False)


@torch.no_grad()
def generate_ids(model: Any, processor: Any, prompts: list[list[dict]], images: list[list[Image.Image]],
                 max_new_tokens: int = 16, batch_size: int = 8, padding_side: str = "left") -> list[list[int]]:
    """Greedy new-token ids for each prompt, `batch_size` prompts per `generate` call, up to the first stop token.

    Left padding keeps every prompt's last token at the end of the row, where generation continues. The model is put
    in eval mode (dropout off), as after `trainer.train()` it is still in training mode.
    """
    model.eval()
    config = greedy_config(model, processor, max_new_tokens)
    stops = set(config.eos_token_id)  # greedy_config always gives a list
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        inputs = batch_inputs(processor, prompts[chunk], images[chunk], padding_side).to(model.device)
        ids = model.generate(**inputs, generation_config=config)[:, inputs["input_ids"].shape[1]:].tolist()
        for row in ids:
            end = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
            out.append(row[:end])
    return out


def generate(model: Any, processor: Any, prompts: list[list[dict]], images: list[list[Image.Image]],
             max_new_tokens: int = 16, batch_size: int = 8, padding_side: str = "left") -> list[str]:
    """Greedy answers to conversational `prompts` (one image list each), decoded without special tokens."""
    ids = generate_ids(model, processor, prompts, images, max_new_tokens, batch_size, padding_side)
    return [a.strip() for a in processor.batch_decode(ids, skip_special_tokens=True)]
