"""Batched left-padded greedy generation returns exactly what one-at-a-time generation returns (tiny models, fp32);
notebook 05 shows that code, the same code the other notebooks import."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import nbformat
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from helpers import generation
from helpers.amber import load_amber, yes_no_prompt
from helpers.generation import batch_inputs, generate_ids
from helpers.processors import load_processor
from tinyenv.hub import AMBER_SAMPLE

MODELS = ["Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b"]
QUESTIONS = ["Is there a tree in this image?", "Describe everything you can see in this picture, one object at a time.",
             "Is the car green?", "What colour is the largest object, and where is it?"]
SIZES = [(224, 168), (448, 336), (300, 500), (392, 392)]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", params=MODELS)
def setup(request):
    processor = load_processor(request.param, max_pixels=256 * 28 * 28)  # what the scripts and notebooks load
    model_id = request.param
    model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=torch.float32)
    images = load_amber(AMBER_SAMPLE, limit=4)["image"]
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


def code_differences(notebook_code: str, module_code: str) -> list[str]:
    """Functions of `module_code` that `notebook_code` lacks or defines differently (compared as syntax trees)."""
    def functions(code: str) -> dict[str, str]:
        return {n.name: ast.dump(n) for n in ast.walk(ast.parse(code)) if isinstance(n, ast.FunctionDef)}
    shown, module = functions(notebook_code), functions(module_code)
    return [name for name in module if shown.get(name) != module[name]]


def test_notebook_05_shows_the_generation_code_the_others_import():
    """Notebook 05 defines the generation loop in plain sight; it is helpers.generation's code, not a drifting copy."""
    nb = nbformat.read(ROOT / "notebooks" / "05_evaluation.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and "def generate_ids(" in c.source)
    module = inspect.getsource(generation)
    assert code_differences(code, module) == []
    assert "helpers.generation" not in "".join(c.source for c in nb.cells if c.cell_type == "code")
    # negative control: the right-padding default (or any edit to a function) is a difference
    assert code_differences(code.replace('padding_side: str = "left"', 'padding_side: str = "right"'), module) == [
        "batch_inputs", "generate_ids", "generate"]
