"""Merging a LoRA adapter into its base changes no answer in fp32: notebook 05's merge (base + adapter ->
`merge_and_unload` -> `save_pretrained` -> loaded again without peft) on a tiny Qwen2-VL in fp32 answers ChartQA charts
token for token as base + adapter does. The notebook itself merges and compares in bf16, where the odd near-tied token
may flip; a 7B model in fp32 does not fit its card, so exactness is checked here.

The adapter is notebook 03's LoRA (r=8, alpha 16, q_proj/v_proj) with `init_lora_weights=False`: LoRA's own start
(B = 0) would make the adapter, and the check, a no-op."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from datasets import load_dataset
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForImageTextToText, AutoProcessor

from helpers.data import format_chartqa
from helpers.generation import generate_ids

QWEN = "Qwen/Qwen2-VL-7B-Instruct"
SFT_LORA = dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")  # notebook 03's
CAP = 64 * 28 * 28  # small charts: the merge, not the image, is under test


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(processor, prompts, images, adapter folder, answers of base + adapter, of the merged model, of the base)."""
    folder = tmp_path_factory.mktemp("merge")
    processor = AutoProcessor.from_pretrained(QWEN)
    processor.image_processor.size = {"shortest_edge": 56 * 56, "longest_edge": CAP}
    raw = load_dataset("HuggingFaceM4/ChartQA", split="test[:8]")
    rows = raw.map(format_chartqa, remove_columns=raw.column_names)
    prompts, images = list(rows["prompt"]), list(rows["images"])

    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(QWEN, dtype=torch.float32)
    get_peft_model(base, LoraConfig(**SFT_LORA, init_lora_weights=False)).save_pretrained(folder / "adapter")

    base = AutoModelForImageTextToText.from_pretrained(QWEN, dtype=torch.float32)
    plain = generate_ids(base, processor, prompts, images)
    model = PeftModel.from_pretrained(base, folder / "adapter")  # as notebook 05: a fresh base, the saved adapter
    with_adapter = generate_ids(model, processor, prompts, images)
    model.merge_and_unload().save_pretrained(folder / "merged")
    merged = AutoModelForImageTextToText.from_pretrained(folder / "merged", dtype=torch.float32)
    return processor, prompts, images, folder, with_adapter, generate_ids(merged, processor, prompts, images), plain


def test_merged_answers_like_base_plus_adapter_in_fp32(setup):
    *_, with_adapter, merged, _ = setup
    assert len(set(map(tuple, merged))) > 1  # the answers differ between charts, so a mix-up would show
    assert merged == with_adapter


def test_negative_control_the_adapter_changes_the_answers(setup):
    """The check is not vacuous: without the adapter the answers differ from the merged model's."""
    *_, merged, plain = setup
    assert plain != merged


def test_negative_control_a_merge_at_another_scale_differs(setup):
    """An adapter whose scale is changed (alpha 16 -> 32: twice B·A) no longer answers like the merged model."""
    processor, prompts, images, folder, _, merged, _ = setup
    scaled = folder / "adapter-alpha32"
    shutil.copytree(folder / "adapter", scaled)
    config = json.loads((scaled / "adapter_config.json").read_text())
    (scaled / "adapter_config.json").write_text(json.dumps(config | {"lora_alpha": 32}))
    base = AutoModelForImageTextToText.from_pretrained(QWEN, dtype=torch.float32)
    assert generate_ids(PeftModel.from_pretrained(base, scaled), processor, prompts, images) != merged
