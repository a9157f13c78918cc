"""benchmarks/flops.py counts exactly the FLOPs torch's FLOP counter sees in a forward and backward of the tiny models."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForImageTextToText, AutoProcessor

from helpers.training import drop_input_grad_hooks
from helpers.vision import image_tokens

from flops import StepShape, mfu, training_flops  # benchmarks/flops.py (pyproject's pytest pythonpath)

QWEN, IDEFICS2 = "Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b"


@pytest.mark.parametrize("hub_id, targets", [(QWEN, ["q_proj", "v_proj"]), (QWEN, "all-linear"),
                                             (IDEFICS2, ["q_proj", "v_proj"]), (IDEFICS2, "all-linear")])
def test_training_flops_equal_the_flop_counter(hub_id, targets):
    """Forward and backward, frozen vision tower or adapted, two images and two prompt lengths (padding included)."""
    path = hub_id
    processor = AutoProcessor.from_pretrained(path, **({"do_image_splitting": False} if hub_id == IDEFICS2 else {}))
    # eager attention: the FLOP counter sees its matmuls (it has no formula for the CPU SDPA kernel)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets)
    peft_model = get_peft_model(model, lora)
    texts = [processor.apply_chat_template([{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "What does the chart show?" * (i + 1)}]}], add_generation_prompt=True)
        for i in range(2)]
    images = [[Image.new("RGB", (420, 280), (60 * i, 0, 0))] for i in range(2)]
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    rows, seq = batch["input_ids"].shape
    patches = image_tokens(model.config, 280, 420, do_image_splitting=False)[1]
    with FlopCounterMode(display=False) as forward:
        logits = peft_model(**batch).logits
    with FlopCounterMode(display=False) as backward:
        logits.square().mean().backward()
    predicted = training_flops(model.config, lora, StepShape(rows, seq, images=2, patches=patches, scored=rows * seq))
    assert (predicted.forward, predicted.backward) == (forward.get_total_flops(), backward.get_total_flops())
    assert predicted.reference == 0


def test_frozen_vision_tower_gets_no_backward_and_reference_is_the_frozen_forward():
    shape = StepShape(rows=4, seq=660, images=4, patches=2400, scored=4 * 12)
    qv = training_flops(QWEN, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]), shape, reference=True)
    every = training_flops(QWEN, LoraConfig(r=8, target_modules="all-linear"), shape, reference=True)
    assert every.backward > 1.3 * qv.backward  # the vision tower's backward (a quarter of the forward work) appears
    assert qv.reference == every.reference < qv.forward < every.forward  # adapters add work; the reference has none
    # the 7B's language model dominates: forward per token is close to 2 FLOPs per weight of the 7.07 B text linears
    text_only = training_flops(QWEN, LoraConfig(r=8, target_modules=["q_proj"]), StepShape(1, 1, 0, 0, 1))
    assert text_only.forward == pytest.approx(2 * 7.07e9, rel=0.01)


def test_mfu_uses_the_device_peak():
    assert mfu(494.5e12, "NVIDIA H100 80GB HBM3") == pytest.approx(0.5)
    assert mfu(156e12, "NVIDIA A100-SXM4-80GB") == pytest.approx(0.5)
    assert mfu(1e12, "cpu-x86_64") is None


def test_dropping_the_input_grad_hook_keeps_gradients_and_skips_the_vision_backward():
    """What the benchmarks' '24gb' recipe does: with non-reentrant checkpointing, TRL's enable_input_require_grads hook
    only adds a backward through the frozen vision tower; without it the LoRA gradients are the same."""
    path = QWEN
    processor = AutoProcessor.from_pretrained(path)
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
                                         add_generation_prompt=True)
    batch = processor(text=[text], images=[[Image.new("RGB", (420, 280), (90, 0, 0))]], return_tensors="pt")
    grads, flops = [], []
    for hook in (True, False):
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32,
                                                                           attn_implementation="eager"),
                               LoraConfig(r=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
        model.base_model.model.gradient_checkpointing_enable({"use_reentrant": False})  # adds the hook
        model.enable_input_require_grads()  # as TRL's trainers do with checkpointing: adds it again
        model.train()
        if not hook:
            assert drop_input_grad_hooks(model) == 4  # text and patch embeddings, twice each
        with FlopCounterMode(display=False) as counter:
            model(**batch).logits.square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
        flops.append(counter.get_total_flops())
    assert grads[0].keys() == grads[1].keys() and all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])
    assert flops[1] < flops[0]
