"""Tiny mode runs the Colab program: tiny checkpoints are the hub's files with only sizes shrunk, and the behaviours the
recipes rely on (image cap, image tokens, greedy decoding, the sequence start of training and generation) hold on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

from tinyenv import build as tiny_build
from tinyenv import hub as tiny
from helpers.amber import load_amber, yes_no_prompt
from helpers.generation import batch_inputs, generate_ids, greedy_config
from helpers.processors import cap_image_tokens, load_processor
from helpers.vision import CHARTQA_MAX_PIXELS, qwen2vl_image_tokens
from tinyenv.hub import AMBER_SAMPLE

QWEN, IDEFICS = "Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b"
KINDS = {QWEN: "qwen2_vl", IDEFICS: "idefics2"}


def differences(hub: object, tiny_value: object, allowed: set[str], ids: dict[int, int], path: str = "") -> list[str]:
    """Paths where `tiny_value` differs from `hub`, other than the `allowed` (shrunk) keys and token ids moved by `ids`."""
    if path.lstrip(".") in allowed:
        return []
    if isinstance(hub, dict) and isinstance(tiny_value, dict):
        if path.endswith("added_tokens_decoder"):
            hub = {str(ids.get(int(k), k)): v for k, v in hub.items()}
        out = [f"{path}.{k}: missing or added" for k in set(hub) ^ set(tiny_value)
               if f"{path}.{k}".lstrip(".") not in allowed]
        return out + [d for k in set(hub) & set(tiny_value)
                      for d in differences(hub[k], tiny_value[k], allowed, ids, f"{path}.{k}")]
    if isinstance(hub, list) and isinstance(tiny_value, list) and len(hub) == len(tiny_value):
        return [d for i, (a, b) in enumerate(zip(hub, tiny_value)) for d in differences(a, b, allowed, ids, path)]
    if path.endswith(tiny_build.ID_KEYS) and isinstance(hub, int) and ids.get(hub) == tiny_value:
        return []
    return [] if hub == tiny_value else [f"{path}: hub {hub!r}, tiny {tiny_value!r}"]


def hub_differences(checkpoint: Path, kind: str) -> list[str]:
    """Every difference between a tiny checkpoint and the shipped hub files, other than the shrunk numbers."""
    spec = tiny_build.SPECS[kind]
    tokens = json.loads((checkpoint / "tokenizer.json").read_text())["added_tokens"]
    added = json.loads(tiny_build.hub_file(spec["added_tokens"]))
    ids = tiny_build.id_map(kind, min(t["id"] for t in tokens if t["content"] in added))
    out = []
    for name, source in spec["files"].items():
        if not (checkpoint / name).exists():
            out.append(f"{name}: missing")
            continue
        hub, mine = json.loads(tiny_build.hub_file(source)), json.loads((checkpoint / name).read_text())
        if name == "added_tokens.json":
            hub = {t: ids[i] for t, i in hub.items()}
        allowed = set(spec["shrink"]) | set(tiny_build.VOCAB_KEYS) if name == "config.json" else set()
        out += [f"{name}{d}" for d in differences(hub, mine, allowed, ids)]
    return out


@pytest.mark.parametrize("hub_id", [QWEN, IDEFICS])
def test_tiny_checkpoint_is_the_hub_files_with_sizes_shrunk(hub_id):
    checkpoint = Path(tiny.snapshot(hub_id))
    assert hub_differences(checkpoint, KINDS[hub_id]) == []
    weights = json.loads(tiny_build.hub_file(tiny_build.SPECS[KINDS[hub_id]]["files"]["config.json"]))["torch_dtype"]
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype="auto")
    assert str(model.dtype) == f"torch.{weights}"  # saved in the hub's dtype (bf16 Qwen2-VL, fp32 idefics2)


@pytest.mark.parametrize("tamper", ["layout", "flag", "token id", "width"])
def test_the_file_comparison_catches_a_changed_file(tmp_path, tamper):
    """Negative control: the comparison fails on the kinds of drift it guards against."""
    checkpoint = tmp_path / "tiny"
    shutil.copytree(tiny.snapshot(QWEN), checkpoint)
    edit = {"layout": ("preprocessor_config.json", lambda c: {k: v for k, v in c.items() if "pixels" not in k}
                       | {"size": {"shortest_edge": 3136, "longest_edge": 12845056}}),
            "flag": ("tokenizer_config.json", lambda c: c | {"padding_side": "right"}),
            "token id": ("generation_config.json", lambda c: c | {"eos_token_id": c["eos_token_id"][:1]}),
            "width": ("config.json", lambda c: c | {"rms_norm_eps": 1e-5})}[tamper]
    path = checkpoint / edit[0]
    path.write_text(json.dumps(edit[1](json.loads(path.read_text()))))
    assert hub_differences(checkpoint, "qwen2_vl")


def test_the_transformers_5_layout_would_have_failed_it(tmp_path):
    """Negative control: the layout the previous tiny checkpoint had (one processor_config.json) is caught."""
    checkpoint = tmp_path / "tiny"
    shutil.copytree(tiny.snapshot(QWEN), checkpoint)
    AutoProcessor.from_pretrained(checkpoint).save_pretrained(checkpoint)  # what the old builder wrote
    (checkpoint / "preprocessor_config.json").unlink(missing_ok=True)
    assert "preprocessor_config.json: missing" in hub_differences(checkpoint, "qwen2_vl")


def tokens_of(processor, width: int, height: int) -> int:
    """How many <|image_pad|> tokens the processor makes of one image."""
    out = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[Image.new("RGB", (width, height))])
    return out["input_ids"][0].count(processor.image_token_id)


@pytest.mark.parametrize("size", [(1920, 1080), (400, 300), (800, 600), (3000, 2000), (850, 557), (28, 2000)])
def test_the_cap_takes_effect_with_the_hubs_processor_file(size):
    processor = cap_image_tokens(AutoProcessor.from_pretrained(QWEN))  # as notebooks 01/03/05 load it
    w, h = size
    expected = qwen2vl_image_tokens(h, w, max_pixels=CHARTQA_MAX_PIXELS)
    assert tokens_of(processor, w, h) == expected
    assert {(1920, 1080): 1008, (400, 300): qwen2vl_image_tokens(300, 400)}.get(size, expected) == expected


def test_a_size_argument_is_ignored_with_the_hubs_processor_file():
    """Negative control (and an upstream bug to watch): the form the cookbook used before does nothing here."""
    size = {"shortest_edge": 3136, "longest_edge": CHARTQA_MAX_PIXELS}
    processor = AutoProcessor.from_pretrained(QWEN, size=size)
    assert tokens_of(processor, 3000, 2000) == qwen2vl_image_tokens(2000, 3000) == 7597


@pytest.mark.parametrize("split, tokens", [(False, 64), (True, 320)])
def test_idefics2_image_tokens_on_the_hub_layout(split, tokens):
    processor = AutoProcessor.from_pretrained(IDEFICS, do_image_splitting=split)
    out = processor(text=["User:<image>What is shown?<end_of_utterance>\n"], images=[[Image.new("RGB", (800, 600))]])
    assert out["input_ids"][0].count(processor.image_token_id) == tokens


@pytest.fixture(scope="module", params=[QWEN, IDEFICS])
def loaded(request):
    processor = load_processor(request.param, max_pixels=64 * 28 * 28)
    model = AutoModelForImageTextToText.from_pretrained(request.param, dtype=torch.float32).eval()
    amber = load_amber(AMBER_SAMPLE, limit=3)
    images = [[image.resize((224, 168))] for image in amber["image"]]  # small: the oracle reruns the vision tower
    return model, processor, [yes_no_prompt(q) for q in amber["query"]], images


def argmax_loop(model, processor, prompt, images, steps: int) -> list[int]:
    """The oracle: feed the prompt, append the argmax token (among the tokens the hub file allows) until a stop token."""
    inputs = batch_inputs(processor, [prompt], [images])
    banned = [w[0] for w in model.generation_config.bad_words_ids or [] if len(w) == 1]
    stops = set(greedy_config(model, processor, steps).eos_token_id)
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(**inputs).logits[0, -1]
            logits[banned] = -torch.inf
            token = int(logits.argmax())
            out.append(token)
            if token in stops:
                break
            seq = inputs["input_ids"].shape[1]
            grow = {"input_ids": token, "attention_mask": 1, "mm_token_type_ids": 0}  # per-token inputs of the row
            for key, value in grow.items():
                if key in inputs and inputs[key].shape[-1] == seq:
                    inputs[key] = torch.cat([inputs[key], torch.full((1, 1), value, dtype=inputs[key].dtype)], dim=1)
    return out


def steer(model, monkeypatch, oracle: list[list[int]]) -> None:
    """Give the model's generation config settings a hub file could hold, aimed at the greedy answers."""
    for key, value in {"repetition_penalty": 30.0, "do_sample": True, "no_repeat_ngram_size": 1,
                       "suppress_tokens": [answer[0] for answer in oracle]}.items():
        monkeypatch.setattr(model.generation_config, key, value)


def test_generation_is_greedy_whatever_the_hub_generation_config_says(loaded, monkeypatch):
    model, processor, prompts, images = loaded
    oracle = [argmax_loop(model, processor, p, i, 6) for p, i in zip(prompts, images)]
    steer(model, monkeypatch, oracle)
    reached = []
    prepare = model._prepare_generation_config
    monkeypatch.setattr(model, "_prepare_generation_config", lambda *a, **k: reached.append(prepare(*a, **k)) or reached[-1])
    assert generate_ids(model, processor, prompts, images, max_new_tokens=6, batch_size=1) == oracle
    config = reached[-1][0]
    assert (config.do_sample, config.num_beams, config.repetition_penalty, config.suppress_tokens) == (False, 1, 1.0, [])


@pytest.mark.parametrize("hub_id", [QWEN, IDEFICS])
def test_what_the_hub_generation_config_passes_to_greedy_decoding(hub_id):
    """Every field of the real generation_config.json that reaches `generate` is a stop/pad/bos id, the forbidden
    image placeholders, a sampling knob that greedy decoding ignores, or one of ours."""
    model = AutoModelForImageTextToText.from_pretrained(hub_id)
    ours = greedy_config(model, load_processor(hub_id), 16)
    reached = model._prepare_generation_config(ours)[0].to_diff_dict()
    defaults = model.generation_config._get_default_generation_params()
    from_file = {k for k, v in reached.items() if v != getattr(ours, k, None) and v != defaults.get(k)}
    inert = {"bos_token_id", "pad_token_id", "eos_token_id", "bad_words_ids", "transformers_version", "_from_model_config"}
    assert from_file <= inert
    assert reached["do_sample"] is False


def test_a_bare_generation_config_inherits_the_hub_settings(loaded, monkeypatch):
    """Negative control: `GenerationConfig(do_sample=False, ...)` alone takes settings from the model's file."""
    model, processor, prompts, images = loaded
    oracle = [argmax_loop(model, processor, prompts[0], images[0], 6)]
    steer(model, monkeypatch, oracle)
    bare = GenerationConfig(do_sample=False, max_new_tokens=6)
    assert model._prepare_generation_config(bare)[0].repetition_penalty == 30.0
    with torch.no_grad():
        inputs = batch_inputs(processor, prompts[:1], images[:1])
        naive = model.generate(**inputs, generation_config=bare)[0, inputs["input_ids"].shape[1]:].tolist()
    assert naive[0] != oracle[0][0]


def test_training_and_generation_start_the_sequence_alike(loaded):
    """TRL's collators tokenize the rendered template without special tokens; generation feeds the same prompt ids."""
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    model, processor, prompts, images = loaded
    row = {"images": images[0], "prompt": prompts[0], "chosen": [{"role": "assistant", "content": [
        {"type": "text", "text": "Yes."}]}], "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "No."}]}]}
    batch = DataCollatorForVisionPreference(processor)([row])
    trained = batch["input_ids"][0][batch["attention_mask"][0].bool() & ~batch["completion_mask"][0].bool()].tolist()
    generated = batch_inputs(processor, prompts[:1], images[:1])["input_ids"][0].tolist()
    assert trained == generated
    bos = processor.tokenizer.bos_token_id
    assert (trained[0] == bos) == (bos is not None)  # idefics2 starts with <s>, as its model card runs it; Qwen has none


def test_without_the_bos_line_idefics2_trains_without_bos():
    """Negative control: with the hub template as shipped, TRL's prompt lacks the <s> the tokenizer adds in generation."""
    processor = AutoProcessor.from_pretrained(IDEFICS, do_image_splitting=False)
    text = processor.apply_chat_template(yes_no_prompt("Is there a car?"), tokenize=False, add_generation_prompt=True)
    assert processor.tokenizer(text, add_special_tokens=False).input_ids[0] != processor.tokenizer.bos_token_id
    assert processor.tokenizer(text).input_ids[0] == processor.tokenizer.bos_token_id
