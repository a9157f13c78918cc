"""The tiny offline mode: resolve(), the data samples, and faithful tiny checkpoints."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Image, List, Value, load_dataset
from transformers import AutoModelForImageTextToText, AutoProcessor

import netguard
from tinyenv import hub as tiny

QWEN, IDEFICS = "Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b"
MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is the value for 2019?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "42"}]},
]


@pytest.mark.parametrize("hub_id", [QWEN, IDEFICS, "HuggingFaceM4/ChartQA", "not/known"])
def test_resolve_is_identity_when_switch_is_off(monkeypatch, hub_id):
    monkeypatch.delenv("COOKBOOK_TINY", raising=False)
    assert tiny.snapshot(hub_id) == hub_id
    monkeypatch.setenv("COOKBOOK_TINY", "0")
    assert tiny.snapshot(hub_id) == hub_id


def test_resolve_unknown_id_in_tiny_mode_names_the_known_ones():
    with pytest.raises(KeyError, match="ChartQA"):
        tiny.snapshot("someone/unknown-model")


def test_both_qwen_sizes_share_one_tiny_checkpoint():
    assert tiny.snapshot("Qwen/Qwen2-VL-2B-Instruct") == tiny.snapshot(QWEN)
    assert Path(tiny.snapshot(QWEN)).is_relative_to(tiny.cache_dir())


def test_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path))
    assert tiny.cache_dir() == tmp_path


@pytest.mark.parametrize("hub_id, splits, features", [
    ("HuggingFaceM4/ChartQA", {"train": 64, "val": 16, "test": 32},
     {"image": Image(), "query": Value("string"), "label": List(Value("string")),
      "human_or_machine": ClassLabel(names=["human", "machine"])}),
    ("openbmb/RLAIF-V-Dataset", {"train": 40},
     {k: Image() if k == "image" else Value("string") for k in
      ["ds_name", "image", "question", "chosen", "rejected", "origin_dataset", "origin_split", "idx", "image_path"]}),
    ("philschmid/amazon-product-descriptions-vlm", {"train": 16},
     {k: Image() if k == "image" else Value("string") for k in
      ["image", "Uniq Id", "Product Name", "Category", "Selling Price", "Model Number", "About Product",
       "Product Specification", "Technical Details", "Shipping Weight", "Variants", "Product Url",
       "Is Amazon Seller", "description"]}),
])
def test_samples_load_with_hub_splits_and_features(hub_id, splits, features):
    data = load_dataset(tiny.snapshot(hub_id))
    assert {s: len(d) for s, d in data.items()} == splits
    for split in data.values():
        assert dict(split.features) == features
    assert len(load_dataset(tiny.snapshot(hub_id), split="train[:10%]")) == round(splits["train"] / 10)


def test_chartqa_sample_has_realistic_image_sizes_and_both_question_kinds():
    data = load_dataset("HuggingFaceM4/ChartQA", split="train")
    assert all(700 <= im.width <= 900 and 500 <= im.height <= 650 for im in data["image"])
    assert set(data["human_or_machine"]) == {0, 1}
    answers = [lab[0] for lab in data["label"]]
    assert {"Yes", "No"} & set(answers) and any(a.replace(".", "").lstrip("-").isdigit() for a in answers)


def test_amber_sample_pairs_every_query_with_a_yes_no_truth():
    root = Path(tiny.DATA_DIR) / "amber"
    queries = json.loads((root / "query_discriminative.json").read_text())
    truths = {a["id"]: a for a in json.loads((root / "annotations.json").read_text())}
    assert len(queries) >= 40 and {q["id"] for q in queries} == set(truths)
    assert {a["truth"] for a in truths.values()} == {"yes", "no"}
    assert all((root / "images" / q["image"]).exists() for q in queries)


def test_tiny_qwen_renders_the_real_template_exactly():
    processor = AutoProcessor.from_pretrained(QWEN)
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    assert processor.apply_chat_template(MESSAGES, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>What is the value for 2019?<|im_end|>\n"
        "<|im_start|>assistant\n42<|im_end|>\n")
    reference = json.loads((tiny.CONFIG_DIR / "qwen2-vl-instruct.added_tokens.json").read_text())
    tokenizer = processor.tokenizer
    for token in reference:  # every real special token is one token, never split
        assert tokenizer.convert_ids_to_tokens(tokenizer(token).input_ids) == [token]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


def test_tiny_idefics2_renders_the_real_template_exactly():
    processor = AutoProcessor.from_pretrained(IDEFICS)
    assert type(processor).__name__ == "Idefics2Processor" and processor.image_seq_len == 64
    assert processor.apply_chat_template(MESSAGES, tokenize=False) == (
        "User:<image>What is the value for 2019?<end_of_utterance>\nAssistant: 42<end_of_utterance>\n")
    tokenizer = processor.tokenizer
    for token in ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]:
        assert tokenizer.convert_ids_to_tokens(tokenizer(token, add_special_tokens=False).input_ids) == [token]
    assert tokenizer("Hi").input_ids[0] == tokenizer.bos_token_id == 1
    assert tokenizer.decode(tokenizer("Zürich ☃", add_special_tokens=False).input_ids) == "Zürich ☃"  # byte fallback


@pytest.mark.parametrize("hub_id", [QWEN, IDEFICS])
def test_tiny_models_generate_answers_that_depend_on_the_input(hub_id):
    path = tiny.snapshot(hub_id)
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    data = load_dataset("HuggingFaceM4/ChartQA", split="test").select(range(4))
    answers = []
    for row in data:
        prompt = processor.apply_chat_template([{"role": "user", "content": MESSAGES[0]["content"][:1] + [
            {"type": "text", "text": row["query"]}]}], add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], images=[[row["image"]]], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        assert out.shape[1] > inputs["input_ids"].shape[1]
        answers.append(tuple(out[0, inputs["input_ids"].shape[1]:].tolist()))
    assert len(set(answers)) == len(answers), "a tiny model gives the same answer to different inputs"


def _digest(path: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.iterdir())}


def test_tiny_builds_are_deterministic(monkeypatch, tmp_path):
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path))
    rebuilt = tiny.tiny_model_path("qwen2_vl")
    assert rebuilt.parent == tmp_path
    assert _digest(rebuilt) == _digest(Path(tiny.snapshot(QWEN)))


def test_network_is_blocked():
    with pytest.raises(netguard.NetworkBlocked):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with pytest.raises(netguard.NetworkBlocked):
        socket.socket().connect(("1.1.1.1", 443))


def test_network_is_blocked_inside_notebook_kernels_too():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import socket\ntry:\n    socket.create_connection(('huggingface.co', 443), timeout=1)\n"
        "except Exception as err:\n    print(type(err).__name__)")])
    NotebookClient(nb, kernel_name="python3", timeout=60).execute()
    assert nb.cells[0].outputs[0].text.strip() == "NetworkBlocked"
