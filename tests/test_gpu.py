"""GPU-only checks (`make test-gpu` on the GPU runner): skipped without CUDA, failed if COOKBOOK_REQUIRE_CUDA=1."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    if os.environ.get("COOKBOOK_REQUIRE_CUDA") == "1":
        raise RuntimeError("COOKBOOK_REQUIRE_CUDA=1 but torch sees no GPU")
    pytest.skip("no CUDA device", allow_module_level=True)


def test_nf4_matmul_on_the_gpu_matches_its_dequantized_weights():
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    torch.manual_seed(0)
    dense = torch.nn.Linear(256, 128, bias=False, dtype=torch.bfloat16)
    layer = bnb.nn.Linear4bit(256, 128, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(dense.weight.data, requires_grad=False, quant_type="nf4")
    layer = layer.cuda()  # quantizes on the way to the GPU
    x = torch.randn(4, 256, device="cuda", dtype=torch.bfloat16)
    weight = dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    assert torch.allclose(layer(x), x @ weight.t(), atol=2e-2, rtol=2e-2)
    assert (weight - dense.weight.cuda()).abs().max() < 0.25 * dense.weight.abs().max()  # 16 levels per block


def test_tiny_qlora_trains_on_the_gpu(tmp_path):
    """One SFT step of the tiny Qwen2-VL in 4-bit on CUDA: adapters in bf16 on the GPU, a finite loss."""
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from helpers.data import format_dataset

    model_id = "Qwen/Qwen2-VL-7B-Instruct"
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForImageTextToText.from_pretrained(model_id, quantization_config=nf4, dtype=torch.bfloat16,
                                                        device_map="auto")
    train = format_dataset(load_dataset("HuggingFaceM4/ChartQA", split="train[:4]"), "chartqa")[0]
    args = SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, bf16=True,
                     max_length=None, report_to="none", save_strategy="no", logging_steps=1)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=AutoProcessor.from_pretrained(
        model_id), peft_config=LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    trainer.train()
    lora = [p for n, p in trainer.model.named_parameters() if "lora_" in n]
    assert lora and all(p.is_cuda and p.dtype == torch.bfloat16 for p in lora)
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
