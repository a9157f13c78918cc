"""The model-swap matrix's budget: exact published parameter counts, image tokens equal to the real image processors',
and an estimate for every architecture (vision tower, projector, language model) that says what it leaves out."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from peft import LoraConfig
from PIL import Image
from transformers import AutoImageProcessor

from helpers.activations import measure_layer
from helpers.budget import LAYER_ACTIVATIONS, LORA_KINDS, STACKS, estimate_training_memory, layer_width
from helpers.matrix_budget import SFT_LORA, SFT_STEP, chart_tokens, matrix_rows, recipe_estimates, sft_lora
from helpers.weights import CONFIG_DIR, SHIPPED_CONFIGS, load_config, meta_model, parameter_counts
from helpers.models import LM_QV, MODELS, SEEDS
from helpers.vision import CHARTQA_MAX_PIXELS, image_tokens, pixel_bytes, qwen_vl_image_tokens, smolvlm_crops

NEW = [hub_id for hub_id in MODELS if hub_id not in SEEDS]
IDS, NEW_IDS = [h.split("/")[1] for h in MODELS], [h.split("/")[1] for h in NEW]
# The published parameter count of each model, which the meta-device count of the shipped config.json must equal.
PUBLISHED = {
    # the hub's model.safetensors.index.json total_size / 2 B (bf16), as tests/test_memory.py has them since the seeds
    "Qwen/Qwen2-VL-7B-Instruct": 8_291_375_616, "HuggingFaceM4/idefics2-8b": 8_402_768_112,
    # huggingface.co's model listing: "numParameters": 8292166656 (the safetensors metadata total; bf16 16,584,333,312 B)
    "Qwen/Qwen2.5-VL-7B-Instruct": 8_292_166_656,
    # the hub's model.safetensors.index.json: metadata.total_size 8875631616 B, all 713 tensors BF16 (as read from the
    # shard headers @ebb281ec in public repos), / 2 B; also `total_parameters: 4437815808` of the loaded checkpoint
    "Qwen/Qwen3-VL-4B-Instruct": 4_437_815_808,
    # keras-hub's medgemma_4b presets (the same architecture): "params": 4300079472; several public repos assert it
    # after Gemma3ForConditionalGeneration.from_pretrained("google/gemma-3-4b-it"); the hub shows "4.3B params"
    "google/gemma-3-4b-it": 4_300_079_472,
    # a public model roster's "published_parameter_count": 2246784880; the hub's fp32 shards total 8.99 GB (4 B each)
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": 2_246_784_880,
}


# The vision towers where a published split exists: Qwen2.5-VL's `model.visual` counted on the loaded checkpoint
# (676550144, a public fine-tuning script's output), Qwen3-VL's from its shards (830695424 B of BF16 `model.visual.`).
PUBLISHED_VISUAL = {"Qwen/Qwen2.5-VL-7B-Instruct": 676_550_144, "Qwen/Qwen3-VL-4B-Instruct": 830_695_424 // 2}


@pytest.mark.parametrize("hub_id", list(MODELS), ids=IDS)
def test_exact_count_equals_the_published_count(hub_id):
    assert parameter_counts(hub_id)["total"] == PUBLISHED[hub_id]
    if hub_id in PUBLISHED_VISUAL:
        visual = meta_model(hub_id).model.visual
        assert sum(p.numel() for p in visual.parameters()) == PUBLISHED_VISUAL[hub_id]


@pytest.mark.parametrize("hub_id", NEW, ids=NEW_IDS)
def test_a_wrong_tie_flag_misses_the_published_count(hub_id):
    """Negative control: flipping tie_word_embeddings (Qwen3-VL and Gemma 3 tie, the others do not) moves the count
    by exactly one vocab x hidden matrix, so the published count pins the flag."""
    cfg = load_config(hub_id)
    text = cfg.get_text_config()
    wrong = not cfg.tie_word_embeddings
    cfg.tie_word_embeddings = text.tie_word_embeddings = wrong
    delta = parameter_counts(cfg)["total"] - PUBLISHED[hub_id]
    assert delta == (1 if wrong is False else -1) * text.vocab_size * text.hidden_size


def _image(height: int, width: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


def folder(hub_id: str):
    """Where a matrix model's hub files ship, under data_samples/configs/."""
    return (CONFIG_DIR / SHIPPED_CONFIGS[hub_id]).parent


def _processed(hub_id, height: int, width: int) -> tuple[int, int, int]:
    """(image tokens, vision patches, pixel bytes) the real image processor gives, with the recipe's settings."""
    import json

    where = folder(hub_id)
    processor = AutoImageProcessor.from_pretrained(where)
    for key, value in MODELS[hub_id].image_settings.items():
        setattr(processor, key, value)
    out = processor(images=[_image(height, width)], return_tensors="pt")
    pixels = out["pixel_values"]
    size = pixels.numel() * pixels.element_size()
    size += out["pixel_attention_mask"].numel() if "pixel_attention_mask" in out else 0
    cfg = load_config(hub_id)
    if "image_grid_thw" in out:  # Qwen: one token per merge x merge patches
        patches = int(out["image_grid_thw"].prod())
        return patches // cfg.vision_config.spatial_merge_size**2, patches, size
    seq = json.loads((where / "processor_config.json").read_text())
    per_image = seq.get("image_seq_len") or seq["image_seq_length"]  # SmolVLM2: 81 per crop, Gemma 3: 256
    images = pixels.shape[1] if pixels.dim() == 5 else pixels.shape[0]
    side = cfg.vision_config.image_size // cfg.vision_config.patch_size
    return images * per_image, images * side**2, size


SIZES = [(600, 800), (800, 600), (300, 2000), (120, 90), (1500, 1500)]


@pytest.mark.parametrize("hub_id", NEW, ids=NEW_IDS)
def test_image_tokens_patches_and_pixel_bytes_equal_the_image_processors(hub_id):
    cfg = load_config(hub_id)
    for height, width in SIZES + [MODELS[hub_id].largest]:
        tokens, patches, size = _processed(hub_id, height, width)
        assert image_tokens(cfg, height, width, **MODELS[hub_id].image_options) == (tokens, patches), (height, width)
        assert pixel_bytes(cfg, patches) == size, (height, width)


def test_chart_tokens_of_the_matrix():
    """The 800x600 chart per model, under each recipe's options (the README's matrix column)."""
    assert {h.split("/")[1]: chart_tokens(h) for h in MODELS} == {
        "Qwen2-VL-7B-Instruct": 609, "idefics2-8b": 64, "Qwen2.5-VL-7B-Instruct": 609,
        "Qwen3-VL-4B-Instruct": 475, "gemma-3-4b-it": 256, "SmolVLM2-2.2B-Instruct": 13 * 81}


@pytest.mark.parametrize("name, silently_uncapped", [("Qwen2.5-VL-7B-Instruct", True), ("Qwen3-VL-4B-Instruct", False)])
def test_which_qwen_cap_takes_effect(name, silently_uncapped):
    """The recipe's line (setting `size` on the loaded image processor) caps both Qwen processors at 1,024 tokens.
    `from_pretrained(size=...)` does not on Qwen2.5-VL: its hub file's top-level `max_pixels` overrides the argument,
    as on Qwen2-VL (helpers/processors.py); Qwen3-VL's file has `size` itself, so there the argument holds."""
    hub_id = next(h for h in NEW if h.endswith(name))
    assert _processed(hub_id, 1500, 1500)[0] == 1024
    processor = AutoImageProcessor.from_pretrained(folder(hub_id), **MODELS[hub_id].image_settings)
    grid = processor(images=[_image(1500, 1500)], return_tensors="pt")["image_grid_thw"]
    assert (int(grid.prod()) // 4 > 1024) is silently_uncapped


def test_wrong_image_arithmetic_is_caught():
    """Negative controls: Qwen2-VL's 28-px tokens on Qwen3-VL, or SmolVLM2 without its upscale to 1536 px, miss."""
    qwen3 = next(h for h in NEW if "Qwen3" in h)
    smol = next(h for h in NEW if "SmolVLM2" in h)
    assert qwen_vl_image_tokens(600, 800, patch_size=14) != _processed(qwen3, 600, 800)[0]
    assert smolvlm_crops(600, 800, longest_edge=800) * 81 != _processed(smol, 600, 800)[0]


def _estimate(hub_id, step, lora, **kw):
    args = {**step, "image_size": MODELS[hub_id].largest, **MODELS[hub_id].image_options, **kw}
    return estimate_training_memory(hub_id, lora_config=LoraConfig(**lora), **args)


@pytest.mark.parametrize("hub_id", NEW, ids=NEW_IDS)
def test_every_architecture_gets_a_full_estimate_that_says_what_it_lacks(hub_id):
    for est in recipe_estimates(hub_id):  # SFT QLoRA and DPO LoRA at batch 4, the largest image
        terms = est.terms()
        assert terms.pop("reference") == 0  # PEFT: the DPO reference is the base with the adapter off
        assert all(v > 0 for v in terms.values()) and math.isfinite(est.peak), terms
        assert est.lacks and all(isinstance(t, str) for t in est.lacks)


# A smaller image per model: Qwen caps pixels, SmolVLM2 upscales every image to 1536 px (so only the aspect ratio
# changes its crops: a 1:4 strip makes 1 x 4 + 1), Gemma 3 resizes every image to 896 x 896.
SMALLER = {"Qwen2.5-VL-7B-Instruct": (300, 400), "Qwen3-VL-4B-Instruct": (300, 400),
           "SmolVLM2-2.2B-Instruct": (384, 1536), "gemma-3-4b-it": (300, 400)}


@pytest.mark.parametrize("hub_id", NEW, ids=NEW_IDS)
def test_estimate_grows_with_batch_and_image(hub_id):
    one, two = (_estimate(hub_id, SFT_STEP, sft_lora(hub_id), batch_size=b) for b in (1, 2))
    assert one.peak < two.peak < recipe_estimates(hub_id)[0].peak  # batch 1 < 2 < 4
    small = _estimate(hub_id, SFT_STEP, sft_lora(hub_id), batch_size=1, image_size=SMALLER[hub_id.split("/")[1]])
    if hub_id.startswith("google/gemma-3"):
        assert small.peak == one.peak
    else:
        assert small.peak < one.peak and small.activations < one.activations and small.inputs < one.inputs


def test_q_v_lora_in_a_siglip_tower_costs_its_activations():
    """Notebook 03's plain q/v list also matches SigLIP's q_proj/v_proj (Gemma 3, SmolVLM2): the tower's checkpointed
    inputs are then kept. The row's targets (the language model only, as the matrix recipe and its estimate use)
    keep less."""
    gemma = next(h for h in NEW if "gemma" in h)
    both, text = _estimate(gemma, SFT_STEP, SFT_LORA), _estimate(gemma, SFT_STEP, sft_lora(gemma))
    assert both.activations > text.activations and both.adapter > text.adapter


def _lm_qv_parameters(hub_id: str) -> int:
    """LoRA r=8 parameters of q_proj and v_proj in every language-model layer, from the config's sizes alone."""
    text = load_config(hub_id).get_text_config()
    head = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    q, v = text.num_attention_heads * head, text.num_key_value_heads * head
    return text.num_hidden_layers * 8 * (2 * text.hidden_size + q + v)


@pytest.mark.parametrize("hub_id", list(MODELS), ids=IDS)
def test_the_sft_estimate_uses_the_rows_lora_targets(hub_id):
    """A regex `target_modules` (LM_QV) reaches peft and the budget as it reaches the trainer: exactly the language
    model's q/v are adapted, counted exactly, and the vision stack is estimated frozen. Negative control: on the SigLIP
    models the plain list also adapts the vision tower, so its count and its estimate are larger."""
    from peft import LoraConfig

    from helpers.budget import _stack_kinds

    adapted = meta_model(hub_id, LoraConfig(**sft_lora(hub_id)))
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == _lm_qv_parameters(hub_id)
    sft = recipe_estimates(hub_id)[0]
    assert sft.adapter == 2 * _lm_qv_parameters(hub_id)  # bf16 on the 4-bit base
    assert [key.split("/")[1] for *_, key in _stack_kinds(adapted, meta_model(hub_id), "qlora")] == ["frozen", "qv"]
    if MODELS[hub_id].lora_targets == LM_QV:
        plain = _estimate(hub_id, SFT_STEP, SFT_LORA)
        assert plain.adapter > sft.adapter and plain.activations > sft.activations
    else:  # the Qwen towers' fused qkv: the plain list is the row's list
        assert MODELS[hub_id].lora_targets == SFT_LORA["target_modules"]


# One layer per new kind of layer (the SigLIP tower is shared by Gemma 3 and SmolVLM2, like idefics2's).
PROBED = ["Qwen2_5_VLVisionBlock/all-linear", "Qwen3VLVisionBlock/all-linear", "SiglipEncoderLayer/qv",
          "Gemma3DecoderLayer/qv"]


@pytest.fixture(scope="module")
def new_layers():
    out = {}
    for hub_id in NEW:
        model = meta_model(hub_id)
        for path, _ in STACKS[model.config.model_type]:
            layer = model.get_submodule(path)[0]
            out[type(layer).__name__] = layer
    return out


@pytest.mark.parametrize("key", PROBED)
def test_activation_table_matches_a_fresh_probe_of_the_real_layer(key, new_layers):
    name, kind = key.split("/")
    layer = new_layers[name]
    saved, peak = LAYER_ACTIVATIONS[f"{key}@{layer_width(layer)}"]
    fresh = measure_layer(layer, LORA_KINDS[name][kind], input_grad=kind != "frozen")
    assert fresh.saved == pytest.approx(saved, rel=0.05) and max(fresh.saved, fresh.peak) == pytest.approx(peak, rel=0.1)


def test_every_new_layer_kind_has_a_measured_row(new_layers):
    """The estimates of the matrix never fall back to measuring at the real width on a user's machine."""
    kinds = {"vision": ("frozen", "all-linear"), "text": ("qv", "all-linear")}
    for hub_id in NEW:
        model = meta_model(hub_id)
        for path, modality in STACKS[model.config.model_type]:
            layer = model.get_submodule(path)[0]
            for kind in kinds[modality] + (("qv",) if "Encoder" in type(layer).__name__ else ()):
                assert f"{type(layer).__name__}/{kind}@{layer_width(layer)}" in LAYER_ACTIVATIONS


def test_matrix_rows():
    rows = {r["model"]: r for r in matrix_rows()}
    assert list(rows) == list(MODELS)
    for hub_id in NEW:
        row = rows[hub_id]
        assert row["parameters"] == PUBLISHED[hub_id]
        assert row["image_tokens_800x600"] == chart_tokens(hub_id)
        assert 0 < row["sft_qlora_gib"] < row["dpo_lora_gib"] and row["lacks"]
    # the smaller models need less than the 7-8 B ones in both recipes
    small = [rows[h] for h in ("Qwen/Qwen3-VL-4B-Instruct", "google/gemma-3-4b-it")]
    assert all(r["dpo_lora_gib"] < rows["Qwen/Qwen2.5-VL-7B-Instruct"]["dpo_lora_gib"] for r in small)


def test_every_recipe_fits_an_a100_40gb():
    """What the README's matrix section says."""
    from helpers.fit import fits

    assert all(fits(est, "A100 40GB") for hub_id in MODELS for est in recipe_estimates(hub_id))


def test_lacks_do_not_enter_the_peak():
    est = recipe_estimates(NEW[0])[0]
    assert est.peak == replace(est, lacks=()).peak == sum(est.terms().values())
    assert "lacks" not in est.gib()


SIZES = [(600, 800), (2000, 3000), (300, 400)]


@pytest.mark.parametrize("hub_id", list(MODELS), ids=IDS)
def test_unset_image_options_are_the_recipes(hub_id):
    """Called without image options (as notebook 02 and the estimators are), the arithmetic applies the recipe's image
    budget of the row: the estimate of a swapped model is the recipe's, not a 28-px cap or an unsplit SmolVLM2."""
    cfg, options = load_config(hub_id), MODELS[hub_id].image_options
    assert [image_tokens(cfg, *size) for size in SIZES] == [image_tokens(cfg, *size, **options) for size in SIZES]


def test_negative_control_qwen2_vl_defaults_would_shortchange_qwen3_vl_and_smolvlm2():
    """The defaults before the matrix (a 28-px pixel cap, no splitting) miss on Qwen3-VL and SmolVLM2."""
    qwen3, smol = load_config("Qwen/Qwen3-VL-4B-Instruct"), load_config("HuggingFaceTB/SmolVLM2-2.2B-Instruct")
    assert image_tokens(qwen3, 2000, 3000, max_pixels=CHARTQA_MAX_PIXELS) != image_tokens(qwen3, 2000, 3000)
    assert image_tokens(smol, 600, 800, do_image_splitting=False) != image_tokens(smol, 600, 800)
