"""The tiny environment (tools/tiny-env): hub ids served offline through the libraries' own loading code, the smaller
numbers applied at start-up and only where listed, a home per run, nothing of the repository importable, no network;
the data samples; faithful tiny checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Image, List, Value, load_dataset
from huggingface_hub import hf_hub_download, snapshot_download
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from trl import GRPOConfig, SFTConfig

import netguard
from tinyenv import hub as tiny

QWEN, IDEFICS = "Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b"
MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is the value for 2019?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "42"}]},
]


def test_hub_ids_load_the_tiny_checkpoints_through_huggingface_hubs_own_cache_lookup():
    path = snapshot_download(QWEN)  # offline: served from HF_HUB_CACHE, as a download that happened before
    assert Path(path) == tiny.snapshot(QWEN) and Path(path).is_relative_to(os.environ["HF_HUB_CACHE"])
    assert Path(hf_hub_download(IDEFICS, "config.json")).parent == tiny.snapshot(IDEFICS)
    assert tiny.snapshot("Qwen/Qwen2-VL-2B-Instruct").resolve() == tiny.snapshot(QWEN).resolve()  # one stand-in


def test_an_id_with_no_stand_in_fails_offline_instead_of_reaching_the_hub():
    with pytest.raises(OSError):
        AutoConfig.from_pretrained("someone/unknown-model")


def test_outside_the_environment_the_hub_ids_are_not_served():
    """Negative control: the same load in a plain interpreter (no start-up code, no tiny Hub cache) fails offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_CACHE", "HF_HOME", "TINY_ENV_HOME")}
    env |= {"HF_HOME": "/nonexistent-hf-home", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", "from datasets import load_dataset; load_dataset('HuggingFaceM4/ChartQA')"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode and "ConnectionError" in done.stderr, done.stderr[-1000:]


def test_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path))
    assert tiny.cache_dir() == tmp_path


def test_the_smaller_splits_apply_to_the_listed_split_strings_only():
    assert len(load_dataset("HuggingFaceM4/ChartQA", split="train[:10%]")) == 16  # numbers.toml, notebook 03
    assert len(load_dataset("HuggingFaceM4/ChartQA", split="train[:50%]")) == 32  # not listed: the sample's own half
    assert [len(d) for d in load_dataset("HuggingFaceM4/ChartQA", split=["val[:10%]", "test[:6]"])] == [8, 6]


def test_the_images_of_listed_splits_only_are_shrunk():
    """A notebook's split gets small images (fast CPU runs); the sample loaded otherwise keeps the real sizes, which
    notebook 01 and the image-token tests read (negative control: `train` is not a listed ChartQA split)."""
    side = tomllib.loads((tiny.REPO_ROOT / "tinyenv" / "numbers.toml").read_text())["images"]["longest_side"]
    listed = load_dataset("HuggingFaceM4/ChartQA", split="train[:10%]")
    assert all(max(image.size) <= side for image in listed["image"])
    assert all(max(image.size) >= 700 for image in load_dataset("HuggingFaceM4/ChartQA", split="train[:16]")["image"])


def test_the_smaller_training_numbers_apply_to_the_listed_run_folders_only(tmp_path):
    listed = SFTConfig(output_dir=str(tmp_path / "qwen2vl-7b-chartqa"), learning_rate=2e-4, gradient_accumulation_steps=8)
    assert (listed.learning_rate, listed.max_steps, listed.gradient_accumulation_steps) == (1e-2, 60, 1)
    other = SFTConfig(output_dir=str(tmp_path / "my-run"), learning_rate=2e-4, gradient_accumulation_steps=8)
    assert (other.learning_rate, other.max_steps, other.gradient_accumulation_steps) == (2e-4, -1, 8)
    assert listed.use_cpu == other.use_cpu == (not torch.cuda.is_available())
    grpo = GRPOConfig(output_dir=str(tmp_path / "qwen2vl-7b-chartqa-grpo"), per_device_train_batch_size=8,
                      gradient_accumulation_steps=8, num_generations=8)
    assert (grpo.num_generations, grpo.generation_batch_size, grpo.max_steps) == (4, 16, 30)  # derived after the numbers


def test_every_listed_run_folder_is_one_a_notebook_names():
    """A run listed in numbers.toml that no notebook names would leave that notebook at its Colab numbers."""
    numbers = tomllib.loads((tiny.REPO_ROOT / "tinyenv" / "numbers.toml").read_text())
    sources = "\n".join(p.read_text() for p in (tiny.REPO_ROOT / "notebooks").glob("*.ipynb"))
    suffixes = re.findall(r'\+ \\"(-[\w-]+)\\"', sources)  # output_dir + "-products"
    runs = [run for listing in numbers.values() for run in listing.get("train", {})]
    for run in runs:
        assert f"/{run}" in sources or any(run == base + suffix for base in runs for suffix in suffixes), run


@pytest.mark.parametrize("code, expected", [
    ("import tinyenv", "ModuleNotFoundError: No module named 'tinyenv'"),
    ("import google.colab", "ModuleNotFoundError: No module named 'google"),
    ("import socket; socket.create_connection(('huggingface.co', 443), timeout=1)", "NetworkBlocked"),
])
def test_a_program_inside_the_environment_sees_none_of_the_repository_no_colab_and_no_network(code, expected, tmp_path):
    done = subprocess.run([str(tiny.REPO_ROOT / "tools" / "tiny-env"), sys.executable, "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode and expected in done.stderr, done.stderr[-1000:]


def test_two_runs_at_once_get_homes_of_their_own_and_leave_nothing_behind(tmp_path):
    """Each invocation gets a fresh home (runs/, AMBER/), so a second run cannot delete the first one's adapters."""
    env = {k: v for k, v in os.environ.items() if k != "TINY_ENV_HOME"}
    code = "import os, time; h = os.environ['TINY_ENV_HOME']; print(h, sorted(os.listdir(h))); time.sleep(1)"
    runs = [subprocess.Popen([str(tiny.REPO_ROOT / "tools" / "tiny-env"), sys.executable, "-c", code], env=env,
                             stdout=subprocess.PIPE, text=True) for _ in range(2)]
    homes = [run.communicate(timeout=300)[0].split(" ", 1) for run in runs]
    assert homes[0][0] != homes[1][0] and all("'AMBER'" in listing and "'runs'" in listing for _, listing in homes)
    assert not any(Path(home).exists() for home, _ in homes)


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
    data = load_dataset(hub_id)
    assert {s: len(d) for s, d in data.items()} == splits
    for split in data.values():
        assert dict(split.features) == features


def test_chartqa_sample_has_realistic_image_sizes_and_both_question_kinds():
    data = load_dataset("HuggingFaceM4/ChartQA", split="train")
    assert all(700 <= im.width <= 900 and 500 <= im.height <= 650 for im in data["image"])
    assert set(data["human_or_machine"]) == {0, 1}
    answers = [lab[0] for lab in data["label"]]
    assert {"Yes", "No"} & set(answers) and any(a.replace(".", "").lstrip("-").isdigit() for a in answers)


def test_amber_sample_pairs_every_query_with_a_yes_no_truth():
    root = tiny.AMBER_SAMPLE
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
    processor = AutoProcessor.from_pretrained(hub_id)
    model = AutoModelForImageTextToText.from_pretrained(hub_id).eval()
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


def test_notebook_kernels_work_in_the_home_offline():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, socket\nprint(os.getcwd(), sorted(os.listdir()))\n"
        "try:\n    socket.create_connection(('huggingface.co', 443), timeout=1)\n"
        "except Exception as err:\n    print(type(err).__name__)")])
    NotebookClient(nb, kernel_name="python3", timeout=60).execute()
    cwd, blocked = nb.cells[0].outputs[0].text.strip().splitlines()
    assert cwd.startswith(os.environ["TINY_ENV_HOME"] + " ") and "'AMBER'" in cwd and "'runs'" in cwd
    assert blocked == "NetworkBlocked"
