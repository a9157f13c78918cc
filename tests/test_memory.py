"""Memory budgets: exact counts from the real configs, exact loaded bytes on the tiny models, estimate invariants."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

from helpers.budget import CUDA_CONTEXT, LAYER_ACTIVATIONS, estimate_training_memory, largest_batch, layer_cost
from helpers.weights import CONFIG_DIR, GIB, format_trainable, load_config, model_bytes, nf4_bytes, parameter_counts, \
    weight_bytes
from tinyenv.hub import REPO_ROOT, tiny_model_path

QWEN7, QWEN2, IDEFICS = "Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-2B-Instruct", "HuggingFaceM4/idefics2-8b"
QV = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])


@pytest.mark.parametrize("hub_id, total", [(QWEN7, 8_291_375_616), (QWEN2, 2_208_985_600), (IDEFICS, 8_402_768_112)])
def test_real_parameter_counts(hub_id, total):
    assert parameter_counts(hub_id) == {"total": total, "trainable": total}


def test_config_forms_agree():
    path = CONFIG_DIR / "qwen2-vl-2b-instruct.config.json"
    assert parameter_counts(path) == parameter_counts(load_config(path)) == parameter_counts(QWEN2)


def test_tied_embeddings_counted_once():
    cfg = load_config(QWEN2)
    assert cfg.tie_word_embeddings
    untied = load_config(QWEN2)
    untied.tie_word_embeddings = False
    text = cfg.get_text_config()
    assert parameter_counts(untied)["total"] - parameter_counts(cfg)["total"] == text.vocab_size * text.hidden_size


def test_lora_count_matches_arithmetic_and_scales_with_rank():
    text = load_config(QWEN7).get_text_config()
    head_dim = text.hidden_size // text.num_attention_heads
    h, kv = text.hidden_size, text.num_key_value_heads * head_dim
    per_layer = lambda r: r * (h + h) + r * (h + kv)  # q: h -> h, v: h -> kv, each A (r x in) + B (out x r)
    for r in (8, 16, 64):
        counts = parameter_counts(QWEN7, LoraConfig(r=r, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
        assert counts["trainable"] == text.num_hidden_layers * per_layer(r)
        assert counts["total"] == 8_291_375_616 + counts["trainable"]
    assert format_trainable(parameter_counts(QWEN7, QV)) == \
        "trainable params: 2,523,136 || all params: 8,293,898,752 || trainable%: 0.0304"


def test_nf4_bytes_arithmetic():
    # 4096 weights: 2048 packed bytes, 64 uint8 absmax, fp32 offset, 1 fp32 nested absmax, 256+16 fp32 codes
    assert nf4_bytes(4096) == 2048 + 64 + 4 + 4 + 1024 + 64
    assert nf4_bytes(4096, double_quant=False) == 2048 + 4 * 64 + 64


@pytest.mark.parametrize("kind", ["qwen2_vl", "idefics2"])
@pytest.mark.parametrize("four_bit, double_quant", [(False, False), (True, True), (True, False)])
def test_predicted_weight_bytes_equal_loaded_bytes(kind, four_bit, double_quant):
    path = tiny_model_path(kind)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=double_quant,
                               bnb_4bit_compute_dtype=torch.bfloat16) if four_bit else None
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16, quantization_config=quant)
    assert model_bytes(model) == weight_bytes(path / "config.json", load_in_4bit=four_bit, double_quant=double_quant)


def test_real_weight_bytes_orders():
    bf16, nf4 = weight_bytes(QWEN7), weight_bytes(QWEN7, load_in_4bit=True)
    assert bf16 == 2 * 8_291_375_616 + 4 * 64 * 2 + 4 * 20 * 2  # params + the two fp32 rotary inv_freq buffer pairs
    assert 0.3 < nf4 / bf16 < 0.4  # embeddings and lm_head stay bf16


def _tiny_estimate(**kw):
    args = dict(method="qlora", lora_config=QV, batch_size=1, text_tokens=60, image_size=(600, 800))
    return estimate_training_memory(tiny_model_path("qwen2_vl") / "config.json", **{**args, **kw})


def test_estimate_invariants():
    one, two = _tiny_estimate(), _tiny_estimate(batch_size=2)
    assert two.activations == 2 * one.activations and two.inputs == 2 * one.inputs
    assert one.weights == two.weights and one.optimizer == 2 * one.gradients == 2 * one.adapter
    assert _tiny_estimate(gradient_checkpointing=False).activations > 3 * one.activations
    assert _tiny_estimate(method="lora").weights > one.weights
    assert _tiny_estimate(dpo=True).reference == 0  # PEFT: the reference is the base with the adapter disabled
    full = _tiny_estimate(method="full", lora_config=None, dpo=True)
    assert full.reference == full.weights and full.optimizer == 2 * full.gradients  # AdamW: two fp32 states
    assert 0 < full.weights - full.gradients < 1024  # the weights also hold the rotary buffers


def test_largest_batch_is_monotone_in_capacity():
    kw = dict(method="qlora", lora_config=QV, text_tokens=60)
    one, two = (estimate_training_memory(QWEN7, batch_size=b, **kw) for b in (1, 2))
    sizes = [largest_batch(c, one, two) for c in (16, 24, 40, 80)]
    assert sizes == sorted(sizes) and sizes[-1] > 0
    b = sizes[1]  # the batch it picks fits 24 GB, one more does not
    assert estimate_training_memory(QWEN7, batch_size=b, **kw).peak + CUDA_CONTEXT <= 24 * GIB
    assert estimate_training_memory(QWEN7, batch_size=b + 1, **kw).peak + CUDA_CONTEXT > 24 * GIB


# The seed recipes' vision layers; tests/test_budget_matrix.py probes a sample of the matrix's.
@pytest.mark.parametrize("key", [k for k in LAYER_ACTIVATIONS if k.split("/")[0] in ("Qwen2VLVisionBlock",
                                                                                    "Idefics2EncoderLayer")])
def test_activation_table_matches_a_fresh_probe(key):
    from benchmarks.activation_probe import layers

    name = key.split("/")[0]
    layer = layers()[name]
    saved, peak = LAYER_ACTIVATIONS.pop(key)  # force a live measurement
    try:
        fresh = layer_cost(layer, key.split("@")[0])
    finally:
        LAYER_ACTIVATIONS[key] = (saved, peak)
    assert fresh[0] == pytest.approx(saved, rel=0.05) and fresh[1] == pytest.approx(peak, rel=0.10)


def test_memory_check_tiny_writes_results(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/memory_check.py", "--tiny", "--only", "sft-qlora-b1-800",
                          "dpo-lora-b1-800", "--out", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "memory-cpu-tiny.json").read_text())
    assert [s["name"] for s in report["settings"]] == ["sft-qlora-b1-800", "dpo-lora-b1-800"]
    assert len(report["memory_relative_errors"]) == 2 and report["versions"]["trl"]
    assert all(s["measured_bytes"] > 0 and s["predicted_bytes"] > 0 for s in report["settings"])
