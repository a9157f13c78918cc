"""4-bit tiny models run on both of bitsandbytes' CPU paths: the plain one, and the AVX512-BF16 one that repacks
weights for inference (it needs in_features divisible by the 64-value quantisation block and out_features by 32)."""

from __future__ import annotations

import copy

import bitsandbytes as bnb
import pytest
import torch
from bitsandbytes.functional import _convert_weight_packed_for_cpu, _convert_weight_packed_for_cpu_inverse, has_avx512bf16
from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

from helpers.amber import load_amber, yes_no_prompt
from helpers.generation import batch_inputs
from helpers.processors import load_processor
from tinyenv.hub import AMBER_SAMPLE

QWEN = "Qwen/Qwen2-VL-7B-Instruct"
NF4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                         bnb_4bit_compute_dtype=torch.bfloat16)  # notebook 03's


def load_4bit(packed: bool) -> torch.nn.Module:
    """The tiny Qwen2-VL in 4-bit as notebook 03 loads it, on the AVX512-BF16 path or forced onto the plain one."""
    model = AutoModelForImageTextToText.from_pretrained(QWEN, quantization_config=NF4, dtype=torch.bfloat16)
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = packed
    return model.eval()


def repack_round_trip(module: bnb.nn.Linear4bit) -> bool:
    """Repack a layer's weight as the AVX512-BF16 path does (pure torch, any CPU), unpack it, compare."""
    weight, state = module.weight.data.clone(), copy.deepcopy(module.weight.quant_state)
    packed, packed_state = _convert_weight_packed_for_cpu(weight.clone(), state)
    back, _ = _convert_weight_packed_for_cpu_inverse(packed, packed_state)
    return torch.equal(back, weight)


def test_every_4bit_layer_can_take_the_avx512_bf16_path():
    model = load_4bit(packed=False)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert len(layers) > 20 and any(n.startswith("model.visual") for n in layers)  # vision tower quantised too
    assert [n for n, m in layers.items() if not repack_round_trip(m)] == []


def test_a_32_wide_layer_cannot():
    """Negative control: the old tiny vision width (32) is narrower than the quantisation block and fails to repack."""
    layer = bnb.nn.Linear4bit(32, 96, compute_dtype=torch.bfloat16, quant_type="nf4").to("cpu")  # .to quantises
    with pytest.raises(RuntimeError, match="invalid for input of size"):
        repack_round_trip(layer)


@pytest.fixture(scope="module")
def prompt_inputs():
    processor = load_processor(QWEN, max_pixels=64 * 28 * 28)
    amber = load_amber(AMBER_SAMPLE, limit=2)
    return batch_inputs(processor, [yes_no_prompt(q) for q in amber["query"]], [[i] for i in amber["image"]])


def logits(model: torch.nn.Module, inputs) -> torch.Tensor:
    """Last-position logits of an inference forward (the case the AVX512-BF16 path takes)."""
    with torch.no_grad():
        return model(**inputs).logits[:, -1].float()


@pytest.mark.skipif(not has_avx512bf16(), reason="this CPU lacks AVX512-BF16: bitsandbytes registers the kernel for the "
                    "repacked layout only on CPUs that have it (backends/cpu/ops.py), so the path cannot be forced here")
def test_the_avx512_bf16_path_agrees_with_the_plain_path(prompt_inputs):
    plain, packed = logits(load_4bit(False), prompt_inputs), logits(load_4bit(True), prompt_inputs)
    assert (plain - packed).abs().max() <= 0.05 * plain.abs().max()
    assert torch.equal(plain.argmax(-1), packed.argmax(-1))


def test_the_plain_path_runs_on_any_cpu(prompt_inputs):
    model = load_4bit(False)
    out = logits(model, prompt_inputs)
    assert torch.isfinite(out).all()
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False)
                   for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))


def train_after_inference(prompt_inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Notebook 03's order on one model: an inference forward (packs on AVX512-BF16), then a training forward of a
    4-bit layer with a bias; return the input gradient, and the same gradient from a model that never ran inference."""
    grads = []
    for infer_first in (True, False):
        model = load_4bit(packed=True)
        if infer_first:
            logits(model, prompt_inputs)
        layer = model.model.visual.blocks[0].attn.qkv
        x = torch.linspace(-1, 1, 5 * layer.in_features, dtype=torch.bfloat16).reshape(5, -1).requires_grad_()
        model.train()
        layer(x).float().square().sum().backward()
        grads.append(x.grad.float())
    return grads[0], grads[1]


@pytest.mark.skipif(not has_avx512bf16(), reason="only CPUs with AVX512-BF16 repack 4-bit weights for inference")
def test_a_model_trains_after_inference(prompt_inputs):
    after, fresh = train_after_inference(prompt_inputs)
    assert (after - fresh).abs().max() <= 0.02 * fresh.abs().max()  # unpacking re-quantises the nested scales


@pytest.mark.skipif(not has_avx512bf16(), reason="only CPUs with AVX512-BF16 repack 4-bit weights for inference")
def test_without_the_workaround_training_after_inference_fails(prompt_inputs, monkeypatch):
    """Negative control: bitsandbytes 0.50.2 alone (what notebook 03 hit at its first training step)."""
    monkeypatch.setattr(bnb.nn.Linear4bit, "forward", bnb.nn.Linear4bit.forward.original)
    with pytest.raises(RuntimeError, match="in-place operation"):
        train_after_inference(prompt_inputs)
