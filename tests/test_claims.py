"""What notebooks 03 and 04 say about trl 1.16 / transformers 5.23, held on the pinned stack with the tiny models."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

from helpers.data import format_dataset

SFT_LORA = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
DPO_LORA = LoraConfig(r=8, lora_alpha=8, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")


def notebook_03_config(output_dir, **extra) -> SFTConfig:
    """Notebook 03's `SFTConfig` with its Colab values, read from the notebook (on a CPU, without trackio)."""
    from test_recipes import config_literals, notebook, recipe_cells

    literals = config_literals(recipe_cells(notebook("03")), "SFTConfig")
    assert literals["learning_rate"] == 2e-4 and literals["warmup_steps"] == 0.03, literals  # the cell was found
    return SFTConfig(**literals | dict(output_dir=str(output_dir), report_to="none", use_cpu=True), **extra)


def test_notebook_03_config_builds_without_a_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        notebook_03_config(tmp_path)


def test_warmup_ratio_was_removed(tmp_path):
    with pytest.raises(TypeError, match="warmup_ratio"):
        notebook_03_config(tmp_path, warmup_ratio=0.03)


def test_a_deprecated_argument_does_warn(tmp_path):
    """Negative control of the no-warning test: a deprecated setting in the same config warns."""
    with pytest.warns(FutureWarning, match="deprecated"):
        notebook_03_config(tmp_path, loss_type="chunked_nll")


@pytest.fixture(scope="module")
def tiny_qwen():
    """The tiny Qwen2-VL and its processor."""
    model_id = "Qwen/Qwen2-VL-7B-Instruct"
    return AutoModelForImageTextToText.from_pretrained(model_id, dtype=torch.float32), AutoProcessor.from_pretrained(model_id)


def test_sft_trainer_refuses_a_peft_model_with_a_peft_config(tiny_qwen, tmp_path):
    model, processor = tiny_qwen
    from datasets import load_dataset

    rows, _ = format_dataset(load_dataset("HuggingFaceM4/ChartQA", split="train[:2]"), "chartqa")
    args = SFTConfig(output_dir=str(tmp_path), max_length=None, report_to="none", use_cpu=True)
    peft_model = get_peft_model(copy.deepcopy(model), copy.deepcopy(SFT_LORA))
    with pytest.raises(ValueError, match="PeftModel"):
        SFTTrainer(model=peft_model, args=args, train_dataset=rows, processing_class=processor, peft_config=SFT_LORA)
    # negative control: the same call with the plain model wraps it once
    trainer = SFTTrainer(model=copy.deepcopy(model), args=args, train_dataset=rows, processing_class=processor,
                         peft_config=copy.deepcopy(SFT_LORA))
    assert sum("lora_A" in n for n, _ in trainer.model.named_parameters()) == 2 * len(model.model.language_model.layers)


@pytest.mark.parametrize("disable_dropout, expected", [(True, 0.0), (False, 0.05)])
def test_dpo_disable_dropout_zeroes_lora_dropout(tiny_qwen, tmp_path, disable_dropout, expected):
    model, processor = tiny_qwen
    from datasets import load_dataset

    pairs, _ = format_dataset(load_dataset("openbmb/RLAIF-V-Dataset", split="train[:2]"), "rlaif_v")
    args = DPOConfig(output_dir=str(tmp_path), max_length=None, report_to="none", use_cpu=True,
                     disable_dropout=disable_dropout)
    trainer = DPOTrainer(model=copy.deepcopy(model), ref_model=None, args=args, train_dataset=pairs,
                         processing_class=processor, peft_config=copy.deepcopy(DPO_LORA))
    lora = [m.p for n, m in trainer.model.named_modules() if ".lora_dropout." in n and isinstance(m, torch.nn.Dropout)]
    assert lora and set(lora) == {expected}


@pytest.mark.parametrize("quantized, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_trl_keeps_qlora_adapters_in_bf16(tmp_path, quantized, dtype):
    """Notebook 02: under TRL, LoRA on a 4-bit base is bf16 (8 bytes a parameter with AdamW); on a bf16 base, fp32."""
    from datasets import load_dataset
    from transformers import BitsAndBytesConfig

    model_id = "Qwen/Qwen2-VL-7B-Instruct"
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16) if quantized else None
    model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=torch.bfloat16, quantization_config=nf4)
    rows, _ = format_dataset(load_dataset("HuggingFaceM4/ChartQA", split="train[:2]"), "chartqa")
    trainer = SFTTrainer(model=model, args=SFTConfig(output_dir=str(tmp_path), max_length=None, report_to="none",
                                                     use_cpu=True, bf16=True),
                         train_dataset=rows, processing_class=AutoProcessor.from_pretrained(model_id),
                         peft_config=copy.deepcopy(SFT_LORA))
    lora = {p.dtype for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert lora == {dtype}
