"""A run killed mid-training and resumed ends exactly where an uninterrupted run ends (tiny QLoRA SFT, CPU)."""

from __future__ import annotations

import pytest
import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer

from helpers.data import format_dataset
from helpers.training import Disconnect, DisconnectAfter, last_checkpoint, train_resumable
from helpers.processors import cap_image_tokens

MODEL = "Qwen/Qwen2-VL-7B-Instruct"
STEPS = 6


@pytest.fixture(scope="module")
def data():
    rows = load_dataset("HuggingFaceM4/ChartQA", split="train[:8]")
    return format_dataset(rows, "chartqa")[0]


def make_trainer(data, output_dir, callbacks=()):
    model_id = MODEL
    processor = cap_image_tokens(AutoProcessor.from_pretrained(model_id), max_pixels=16 * 28 * 28)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForImageTextToText.from_pretrained(model_id, quantization_config=quant, dtype=torch.bfloat16)
    args = SFTConfig(output_dir=str(output_dir), max_steps=STEPS, per_device_train_batch_size=2, learning_rate=1e-3,
                     warmup_steps=0.3, lr_scheduler_type="cosine", activation_checkpointing=True, bf16=True,
                     max_length=None, save_strategy="steps", save_steps=2, logging_steps=1, report_to="none",
                     use_cpu=True, seed=0)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=processor, peft_config=lora,
                      callbacks=list(callbacks))


def adapter(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items() if "lora_" in k}


def test_resume_after_disconnect_is_bit_identical(data, tmp_path):
    reference = make_trainer(data, tmp_path / "straight")
    reference.train()
    expected = adapter(reference)

    interrupted = make_trainer(data, tmp_path / "interrupted", callbacks=[DisconnectAfter(3)])
    with pytest.raises(Disconnect):
        interrupted.train()
    assert interrupted.state.global_step == 3
    assert last_checkpoint(tmp_path / "interrupted").endswith("checkpoint-2")  # step 3 was lost, as in a disconnect

    resumed = make_trainer(data, tmp_path / "interrupted")
    train_resumable(resumed)
    assert resumed.state.global_step == reference.state.global_step == STEPS
    got = adapter(resumed)
    assert got.keys() == expected.keys() and len(got) > 0
    assert all(torch.equal(got[k], expected[k]) for k in got)
    assert not all(torch.equal(got[k], adapter(make_trainer(data, tmp_path / "fresh"))[k]) for k in got)  # it trained
    losses = lambda t: [r["loss"] for r in t.state.log_history if "loss" in r]  # steps 1-2 come from the checkpoint
    assert losses(resumed) == losses(reference) and len(losses(reference)) == STEPS


def test_plain_resume_changes_the_adapter_precision(data, tmp_path):
    """Negative control: without `KeepTrainableDtypes`, a resumed QLoRA run continues in fp32, not TRL's bf16.

    If this starts failing, peft/TRL fixed the upcast upstream and the callback can go.
    """
    interrupted = make_trainer(data, tmp_path, callbacks=[DisconnectAfter(3)])
    assert {p.dtype for p in interrupted.model.parameters() if p.requires_grad} == {torch.bfloat16}
    with pytest.raises(Disconnect):
        interrupted.train()
    plain = make_trainer(data, tmp_path)
    plain.train(resume_from_checkpoint=last_checkpoint(tmp_path))
    assert {p.dtype for p in plain.model.parameters() if p.requires_grad} == {torch.float32}


def test_last_checkpoint_of_missing_folder_is_none(tmp_path):
    assert last_checkpoint(tmp_path / "nothing-here") is None
