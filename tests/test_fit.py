"""helpers.fit: generation budgets, the card check the notebooks assert, and the time floor."""

from __future__ import annotations

import weakref
from pathlib import Path

import nbformat
import pytest
import torch
from peft import LoraConfig

from helpers.budget import estimate_training_memory
from helpers.fit import CARDS, estimate_generation_memory, fits, free_memory, generation_seconds_lower_bound, report
from helpers.weights import GIB, weight_bytes

ROOT = Path(__file__).resolve().parent.parent
QWEN_7B, IDEFICS2 = "Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b"
SFT_LORA = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def test_generation_estimate_terms():
    one = estimate_generation_memory(QWEN_7B, method="qlora", batch_size=1, text_tokens=60, image_size=(600, 800))
    two = estimate_generation_memory(QWEN_7B, method="qlora", batch_size=2, text_tokens=60, image_size=(600, 800))
    assert one.weights == weight_bytes(QWEN_7B, load_in_4bit=True) and one.gradients == one.optimizer == 0
    # KV cache of Qwen2-VL-7B: 28 layers x 4 KV heads x 128 x (K and V) x bf16, per token of 60 + 609 + 16
    assert one.activations == 28 * 4 * 128 * 2 * 2 * (60 + 609 + 16)
    assert two.activations == 2 * one.activations and two.peak > one.peak
    with_adapter = estimate_generation_memory(QWEN_7B, method="qlora", lora_config=SFT_LORA, text_tokens=60)
    assert with_adapter.adapter == 4 * 2_523_136  # notebook 03's adapter count, in fp32


def test_fits_and_its_negative_control(capsys):
    small = estimate_generation_memory(IDEFICS2, batch_size=1)
    assert fits(small, "A100 40GB") and report("idefics2", small, "A100 40GB")
    assert "fits" in capsys.readouterr().out
    assert not fits(small, "T4 16GB")  # 15.7 GiB of bf16 weights alone
    full = estimate_training_memory(IDEFICS2, method="full", dpo=True, batch_size=1)
    assert not report("full DPO", full, "A100 80GB") and "DOES NOT FIT" in capsys.readouterr().out


def test_time_floor_grows_with_work():
    base = generation_seconds_lower_bound(QWEN_7B, "A100 40GB", 2500, 16, 669, 16)
    assert base > 0
    assert generation_seconds_lower_bound(QWEN_7B, "A100 40GB", 5000, 16, 669, 16) > base
    assert generation_seconds_lower_bound(QWEN_7B, "A100 80GB", 2500, 16, 669, 16) < base  # faster memory
    assert generation_seconds_lower_bound(QWEN_7B, "A100 40GB", 2500, 16, 669, 16, load_in_4bit=True) < base


def test_free_memory_checks_that_released_models_are_gone():
    model = torch.nn.Linear(2, 2)
    released = weakref.ref(model)
    holder = [model]
    del model
    with pytest.raises(RuntimeError, match="Linear"):  # negative control: the list still holds it
        free_memory(released)
    del holder
    assert free_memory(released) == 0.0 and released() is None


@pytest.mark.parametrize("name", ["03", "04", "05"])
def test_budget_cells_assert_the_card_the_table_names(name):
    path = next((ROOT / "notebooks").glob(f"{name}_*.ipynb"))
    cells = nbformat.read(path, as_version=4).cells
    colab_row = next(line for line in cells[0].source.splitlines() if line.startswith("| Colab"))
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    cards = {card for card in CARDS if f'"{card}"' in code}  # the cards the budget cells report on
    assert cards
    assert any(card in colab_row for card in cards), (cards, colab_row)
    budgets = [c for c in cells if c.cell_type == "code" and "assert report(" in c.source]
    assert budgets and all("nbval-check-output" in c.metadata.get("tags", []) for c in budgets)
    assert all("DOES NOT FIT" not in o.get("text", "") for c in budgets for o in c.outputs)


def notebook_cards(source: str) -> dict:
    """The `GPUS = {...}` table of a notebook 02 code cell."""
    import ast

    line = next(line for line in source.splitlines() if line.startswith("GPUS = "))
    return ast.literal_eval(line.split("=", 1)[1].split("#")[0].strip())


def test_the_cards_are_notebook_02s_table():
    """One table of usable memory per card: the one notebook 02 shows is the one the budget checks use."""
    cells = nbformat.read(Path(__file__).resolve().parent.parent / "notebooks" / "02_memory_budget.ipynb", 4).cells
    source = next(c.source for c in cells if "GPUS = " in c.source)
    assert notebook_cards(source) == CARDS
    assert notebook_cards(source.replace('"A100 40GB": 40', '"A100 40GB": 39')) != CARDS  # negative control
