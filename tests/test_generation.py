"""Batched left-padded greedy generation returns exactly what one-at-a-time generation returns (tiny models, fp32)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from helpers.amber import load_amber, yes_no_prompt
from helpers.generation import batch_inputs, generate_ids
from helpers.tiny import resolve
from helpers.processors import load_processor

MODELS = ["Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b"]
QUESTIONS = ["Is there a tree in this image?", "Describe everything you can see in this picture, one object at a time.",
             "Is the car green?", "What colour is the largest object, and where is it?"]
SIZES = [(224, 168), (448, 336), (300, 500), (392, 392)]


@pytest.fixture(scope="module", params=MODELS)
def setup(request):
    processor = load_processor(request.param, max_pixels=256 * 28 * 28)  # what the scripts and notebooks load
    model_id = resolve(request.param)
    model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=torch.float32)
    images = load_amber(limit=4)["image"]
    prompts = [yes_no_prompt(q) for q in QUESTIONS]
    batch_images = [[image.resize(size)] for image, size in zip(images, SIZES)]
    return model, processor, prompts, batch_images


def test_batched_equals_one_at_a_time(setup):
    model, processor, prompts, images = setup
    single = [generate_ids(model, processor, [p], [i], max_new_tokens=8)[0] for p, i in zip(prompts, images)]
    batched = generate_ids(model, processor, prompts, images, max_new_tokens=8, batch_size=4)
    assert len(set(map(tuple, single))) > 1  # the answers differ, so a shifted row would show
    assert batched == single


def test_first_step_logits_match(setup):
    model, processor, prompts, images = setup
    model.eval()
    with torch.no_grad():
        batched = model(**batch_inputs(processor, prompts, images)).logits[:, -1]
        for row, (p, i) in enumerate(zip(prompts, images)):
            single = model(**batch_inputs(processor, [p], [i])).logits[0, -1]
            assert (batched[row] - single).abs().max() <= 1e-5 * single.abs().max()


def test_right_padding_fails_the_same_check(setup):
    """Negative control: with right padding, generation continues after pad tokens and answers change."""
    model, processor, prompts, images = setup
    single = [generate_ids(model, processor, [p], [i], max_new_tokens=8)[0] for p, i in zip(prompts, images)]
    right = generate_ids(model, processor, prompts, images, max_new_tokens=8, batch_size=4, padding_side="right")
    assert right != single
