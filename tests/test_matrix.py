"""The model-swap matrix: the SFT and DPO recipes and batched generation on every model of `helpers.models.MODELS`,
each through its tiny stand-in (the hub's processor, templates and tokens, shrunk sizes)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
import trl
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

from tinyenv import build as tiny_build
from tinyenv import hub as tiny
from helpers.amber import load_amber, yes_no_prompt
from helpers.data import format_dataset
from helpers.generation import generate_ids
from helpers.models import MODELS, recipe_lines
from helpers.processors import end_of_turn_id, load_processor
from tinyenv.hub import AMBER_SAMPLE
from test_fidelity import hub_differences

TINY_PIXELS = 64 * 28 * 28  # a few dozen Qwen image tokens, so CPU steps stay cheap
NEW = {"Qwen/Qwen2.5-VL-7B-Instruct": "qwen2_5_vl", "Qwen/Qwen3-VL-4B-Instruct": "qwen3_vl",
       "google/gemma-3-4b-it": "gemma3", "HuggingFaceTB/SmolVLM2-2.2B-Instruct": "smolvlm2"}
COMMON = dict(per_device_train_batch_size=2, max_length=None, report_to="none", save_strategy="no", use_cpu=True,
              seed=0, logging_steps=1, lr_scheduler_type="constant", disable_tqdm=True)


@pytest.fixture(scope="module", params=list(MODELS))
def loaded(request):
    """A matrix model's hub id and processor, as the recipes load it (with tiny-mode image budgets)."""
    processor = load_processor(request.param, max_pixels=TINY_PIXELS)
    image_processor = processor.image_processor
    if getattr(image_processor, "do_image_splitting", False):  # SmolVLM2: 2x2 crops and the whole image, not 4x4
        image_processor.size = {"longest_edge": 2 * image_processor.max_image_size["longest_edge"]}
    return request.param, processor


def fresh(hub_id: str):
    """The fp32 tiny model, loaded anew (a trainer's LoRA would otherwise stay in a shared one)."""
    return AutoModelForImageTextToText.from_pretrained(hub_id, dtype=torch.float32)


@pytest.fixture(scope="module")
def chartqa():
    data = load_dataset("HuggingFaceM4/ChartQA", split="train").select(range(2))
    return format_dataset(data, "chartqa")[0]


def lora(hub_id: str) -> LoraConfig:
    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=MODELS[hub_id].lora_targets,
                      task_type="CAUSAL_LM")


def sft_trainer(processor, hub_id, rows, tmp_path) -> SFTTrainer:
    """The SFTTrainer of the recipe (notebook 03's prompt/completion rows and settings) on the tiny model."""
    args = SFTConfig(output_dir=str(tmp_path), max_steps=1, **COMMON)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SFTTrainer(model=fresh(hub_id), args=args, train_dataset=rows, processing_class=processor,
                          peft_config=lora(hub_id))


def masking_errors(processor, batch, rows) -> list[str]:
    """Where the supervised tokens are not exactly the answer and the template's end of turn, as rendered."""
    errors, tok, turn = [], processor.tokenizer, end_of_turn_id(processor)
    for ids, labels, row in zip(batch["input_ids"], batch["labels"], rows):
        answer = row["completion"][0]["content"][0]["text"]
        full = processor.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        start = full.rindex(answer)  # the answer as the template writes it, with the space it may put before it
        while start and full[start - 1] == " ":
            start -= 1
        expected = tok(full[start:], add_special_tokens=False).input_ids
        supervised = ids[labels != -100].tolist()
        if supervised != expected:
            errors.append(f"supervised {tok.decode(supervised)!r}, rendered answer {full[start:]!r}")
        if turn not in supervised or tok.decode(supervised[:supervised.index(turn)]).strip() != answer:
            errors.append(f"no end of turn right after the answer in {tok.decode(supervised)!r}")
    return errors


def test_new_stand_ins_are_the_hub_files_with_sizes_shrunk():
    for hub_id, kind in NEW.items():
        assert hub_differences(tiny.tiny_model_path(kind), kind) == [], hub_id
    assert set(NEW) | {"Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b"} == set(MODELS)
    assert all(tiny.TINY_MODELS[h] in tiny_build.SPECS for h in MODELS)


TRL_TEMPLATES = {"qwen2_vl": "qwen2_5_vl", "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "gemma3": "gemma3",
                  "smolvlm2": "smolvlm"}


def test_stand_ins_carry_the_chat_templates_trl_knows_as_the_hubs():
    """TRL 1.16 recognises a model by comparing its template byte for byte with the hub's, stored in the package."""
    stored = {name: (Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja").read_text()
              for name in set(TRL_TEMPLATES.values())}
    for hub_id in MODELS:
        kind = tiny.TINY_MODELS[hub_id]
        template = AutoProcessor.from_pretrained(hub_id).chat_template
        expected = [TRL_TEMPLATES[kind]] if kind in TRL_TEMPLATES else []  # idefics2's matches none of them
        assert [name for name, text in stored.items() if text == template] == expected, hub_id


def test_sft_supervises_exactly_the_answer_and_the_end_of_turn(loaded, chartqa, tmp_path):
    hub_id, processor = loaded
    trainer = sft_trainer(processor, hub_id, chartqa, tmp_path)
    rows = list(chartqa)
    batch = trainer.data_collator([dict(r) for r in rows])
    assert masking_errors(processor, batch, rows) == []
    full = [processor.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in rows]
    rendered = processor(text=full, images=[r["images"] for r in rows], add_special_tokens=False)["input_ids"]
    for ids, mask, want in zip(batch["input_ids"], batch["attention_mask"], rendered):
        assert ids[mask == 1].tolist() == want  # the sequence trained on is the rendered template, token for token
    bos = processor.tokenizer.bos_token_id
    if bos is not None:  # the template writes the BOS (Gemma 3, idefics2 via bos_in_template) once, never twice
        assert all(row[mask == 1].tolist().count(bos) <= 1 for row, mask in zip(batch["input_ids"],
                                                                                  batch["attention_mask"]))


def test_the_masking_check_fails_when_the_prompt_or_the_end_of_turn_is_off(loaded, chartqa, tmp_path):
    """Negative controls: a collator that supervises the prompt, and labels without the end of turn, are caught."""
    hub_id, processor = loaded
    trainer = sft_trainer(processor, hub_id, chartqa, tmp_path)
    rows = list(chartqa)
    trainer.data_collator.completion_only_loss = False
    assert masking_errors(processor, trainer.data_collator([dict(r) for r in rows]), rows)
    trainer.data_collator.completion_only_loss = True
    batch = trainer.data_collator([dict(r) for r in rows])
    batch["labels"][batch["labels"] == end_of_turn_id(processor)] = -100
    assert masking_errors(processor, batch, rows)


def test_dpo_steps_raise_the_margin(loaded, tmp_path):
    """Two DPO steps on one RLAIF-V pair: the first logs margin 0 (LoRA starts as the reference), the second more."""
    hub_id, processor = loaded
    raw = load_dataset("openbmb/RLAIF-V-Dataset", split="train").select(range(1))
    pairs, _ = format_dataset(raw, "rlaif_v")
    args = DPOConfig(output_dir=str(tmp_path), max_steps=2, learning_rate=2e-2, beta=0.1,
                     **COMMON | {"per_device_train_batch_size": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = DPOTrainer(model=fresh(hub_id), ref_model=None, args=args, train_dataset=pairs,
                             processing_class=processor, peft_config=lora(hub_id))
        trainer.train()
    margins = [log["rewards/margins"] for log in trainer.state.log_history if "rewards/margins" in log]
    assert len(margins) == 2 and margins[0] == 0 < margins[1], margins


def test_batched_generation_equals_one_by_one(loaded):
    hub_id, processor = loaded
    model = fresh(hub_id)
    images = load_amber(AMBER_SAMPLE, limit=3)["image"]
    prompts = [yes_no_prompt(q) for q in ["Is there a tree?", "Describe every object you can see, one by one.",
                                          "Is the car green?"]]
    batch_images = [[im.resize(size)] for im, size in zip(images, [(224, 168), (448, 336), (300, 500)])]
    single = [generate_ids(model, processor, [p], [i], max_new_tokens=4)[0] for p, i in zip(prompts, batch_images)]
    batched = generate_ids(model, processor, prompts, batch_images, max_new_tokens=4, batch_size=3)
    assert len(set(map(tuple, single))) > 1  # the answers differ, so a shifted row would show
    assert batched == single
    right = generate_ids(model, processor, prompts, batch_images, max_new_tokens=4, batch_size=3, padding_side="right")
    assert right != single  # negative control: right padding continues after the pads, and the check sees it


@pytest.mark.parametrize("hub_id", list(MODELS))
def test_lora_targets_are_the_language_models_q_and_v(hub_id):
    from peft import get_peft_model

    def wrapped(targets):
        config = LoraConfig(r=8, target_modules=targets, task_type="CAUSAL_LM")
        return [n for n, _ in get_peft_model(fresh(hub_id), config).named_modules() if n.endswith(".lora_A")]

    layers = fresh(hub_id).config.get_text_config().num_hidden_layers
    mine = wrapped(MODELS[hub_id].lora_targets)
    assert len(mine) == 2 * layers and all(re.search(r"\.(language|text)_model\.", n) for n in mine)
    if MODELS[hub_id].family != "qwen":  # negative control: the plain list also adapts the vision tower
        assert len(wrapped(["q_proj", "v_proj"])) > len(mine)


@pytest.mark.parametrize("hub_id", list(MODELS))
def test_the_printed_lines_give_the_processor_load_processor_gives(hub_id):
    """`recipe_lines` (notebook 07 prints them to copy) run as written give the image processor and the chat template of
    `load_processor`. Negative control: without the row's image-budget line (Qwen: the pixel cap), its loading options
    (idefics2: splitting off) or its template line (idefics2: the <s>), the processor differs."""
    def run(lines: str) -> tuple[dict, str]:
        scope = {"AutoProcessor": AutoProcessor, "torch": torch}  # the lines' own imports, as notebook 03 has them
        exec(lines, scope)
        return scope["processor"].image_processor.to_dict(), scope["processor"].chat_template

    loaded = load_processor(hub_id)
    lines, swap = recipe_lines(hub_id), MODELS[hub_id]
    assert run(lines) == (loaded.image_processor.to_dict(), loaded.chat_template)
    changed = [swap.image_budget if swap.family == "qwen" else swap.kwargs_text, swap.template_line]
    for line in filter(None, changed):  # Gemma 3 sets nothing; SmolVLM2's line restates the hub's default
        assert run(lines.replace(line, "")) != (loaded.image_processor.to_dict(), loaded.chat_template), line


def test_gemma3_trains_with_token_type_ids(chartqa, tmp_path):
    """Gemma 3 lets an image's tokens attend to each other both ways only where token_type_ids mark them: TRL's
    collator makes them (1 on every <image_soft_token>), the training step passes them, and the loss depends on them."""
    hub_id, rows = "google/gemma-3-4b-it", chartqa.select(range(1))
    processor = load_processor(hub_id)
    trainer = sft_trainer(processor, hub_id, rows, tmp_path)
    batch = trainer.data_collator([dict(r) for r in rows])
    assert torch.equal(batch["token_type_ids"], (batch["input_ids"] == processor.tokenizer.image_token_id).long())
    rendered = processor.apply_chat_template(rows[0]["prompt"] + rows[0]["completion"], tokenize=False)
    bos = processor.tokenizer.bos_token_id
    assert batch["input_ids"][0].tolist().count(bos) == 1  # the template writes <bos>; TRL adds no second one
    assert processor(text=[rendered], images=[rows[0]["images"]])["input_ids"][0].count(bos) == 2  # the trap TRL avoids
    seen = []
    trainer.model.register_forward_pre_hook(lambda _, args, kwargs: seen.append(kwargs.get("token_type_ids")),
                                            with_kwargs=True)
    trainer.train()
    assert seen and all(t is not None and t.sum() == 256 for t in seen)
    model = trainer.model.eval()
    with torch.no_grad():
        with_types = model(**batch).logits
        without = model(**{k: v for k, v in batch.items() if k != "token_type_ids"}).logits
    assert (with_types - without).abs().max() > 1e-2  # negative control: without them the model computes otherwise
