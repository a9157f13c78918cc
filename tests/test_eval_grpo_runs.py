"""What the copies of notebooks 05 and 06 leave behind: the `recipe_runs` fixture runs the parameters and recipe cells
of notebooks 03, 04, 05 and 06, in that order, in one reader's folder, inside the tiny environment (its smaller numbers
are tinyenv/numbers.toml's).

- 05: the copy runs to the end, prints the ChartQA scores of base, SFT adapter and merged model, finds the merged
  model answering like base + adapter in bf16, and leaves a merged folder that loads on its own (weights without LoRA
  layers, the adapted projections changed and nothing else, the processor with the notebook's image cap).
- 06: the GRPO run had a learning signal in most steps, gradients wherever a group had a reward spread, the reward
  the tiny model can learn (the format reward: notebook 03's adapter taught it to end answers early) clearly up, and
  its saved adapter moved away from LoRA's zero start. A random tiny model does not read charts, so the correctness
  reward stays at 0 and says nothing.

Each check is a function returning its problems; each has a negative control built from the real run's output with
the property it guards removed.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

QWEN = "Qwen/Qwen2-VL-7B-Instruct"
SFT_RUN, GRPO_RUN = "qwen2vl-7b-chartqa", "qwen2vl-7b-chartqa-grpo"
FORMAT = "rewards/format_reward/mean"
MAX_PIXELS = 1024 * 28 * 28  # notebook 05's cap, saved with the merged model's processor
SCORED = ("base", "SFT", "merged")
MIN_AGREEMENT = 0.75  # bf16: merged == base + adapter on most answers (the odd near-tie flips; fp32: tests/test_merge.py)


# Notebook 05 ---------------------------------------------------------------------------------------------------------

SCORE_LINE = re.compile(r"^(\w+)\s+all\s+([\d.]+)%\s+human\s+([\d.]+)%\s+machine\s+([\d.]+)%\s*$", re.M)
AGREEMENT = re.compile(r"^bf16: merged == base \+ adapter on (\d+) of (\d+) answers$", re.M)


def scores_problems(stdout: str) -> list[str]:
    """What is missing from the ChartQA scores 05 prints last: a line (all, human, machine) for base, SFT and merged."""
    last = {}
    for name, *values in SCORE_LINE.findall(stdout):
        last[name] = [float(v) for v in values]
    problems = [f"no score line for {name}" for name in SCORED if name not in last]
    return problems + [f"{name}: a score outside 0-100 %" for name, values in last.items()
                       if not all(0 <= v <= 100 for v in values)]


def agreement_problems(stdout: str) -> list[str]:
    """Whether 05's merge check printed, and found the merged model answering like base + adapter on most answers."""
    found = AGREEMENT.findall(stdout)
    if len(found) != 1:
        return [f"{len(found)} merge-check lines"]
    same, total = map(int, found[0])
    if total == 0 or same < MIN_AGREEMENT * total:
        return [f"merged == base + adapter on {same} of {total} answers"]
    return []


def merged_problems(folder: Path) -> list[str]:
    """What is wrong with a merged-model folder: it must load without peft (no LoRA tensors), differ from the base only
    in the projections notebook 03's adapter trains (q_proj, v_proj of the language model), and hold the processor with
    the notebook's image cap."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    problems = []
    files = sorted(folder.glob("*.safetensors"))
    if not files or not (folder / "config.json").is_file():
        return [f"no weights or config in {folder}"]
    if any("lora_" in key for f in files for key in load_file(f)):
        problems.append("LoRA tensors in the merged weights")
    try:
        processor = AutoProcessor.from_pretrained(folder)
        if processor.image_processor.size.get("longest_edge") != MAX_PIXELS:
            problems.append(f"processor cap {processor.image_processor.size}, not {MAX_PIXELS}")
    except (OSError, ValueError, TypeError) as err:
        problems.append(f"processor: {type(err).__name__}")
    # bf16, as the notebook loads the base before merging: the weights the merge leaves alone are then bit for bit equal
    merged = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.bfloat16).state_dict()
    base = AutoModelForImageTextToText.from_pretrained(QWEN, dtype=torch.bfloat16).state_dict()
    if merged.keys() != base.keys():
        return problems + ["not the base model's tensors"]
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    if not changed:
        problems.append("no weight differs from the base: nothing merged")
    unexpected = [k for k in changed if not re.search(r"language_model\..*\.(q_proj|v_proj)\.weight$", k)]
    if unexpected:
        problems.append(f"weights the adapter does not train changed: {unexpected[:3]}")
    return problems


@pytest.fixture(scope="module")
def copy_05(recipe_runs):
    done = recipe_runs.run("05")
    assert done.returncode == 0, (done.stdout or "")[-2000:] + (done.stderr or "")[-4000:]
    return done


def test_copy_of_05_scores_base_sft_and_merged(copy_05):
    assert scores_problems(copy_05.stdout) == []
    assert agreement_problems(copy_05.stdout) == []


def test_negative_control_a_missing_score_or_a_disagreeing_merge_is_found(copy_05):
    without_merged = "\n".join(line for line in copy_05.stdout.splitlines() if not line.startswith("merged "))
    assert scores_problems(without_merged) == ["no score line for merged"]
    disagreeing = AGREEMENT.sub("bf16: merged == base + adapter on 3 of 32 answers", copy_05.stdout)
    assert agreement_problems(disagreeing) == ["merged == base + adapter on 3 of 32 answers"]
    assert agreement_problems(AGREEMENT.sub("", copy_05.stdout)) == ["0 merge-check lines"]


def test_merged_folder_loads_on_its_own(recipe_runs, copy_05):
    assert merged_problems(recipe_runs.home / "runs" / SFT_RUN / "merged") == []


def test_negative_control_a_folder_without_processor_or_merge_is_found(recipe_runs, copy_05, tmp_path):
    from transformers import AutoModelForImageTextToText

    merged = recipe_runs.home / "runs" / SFT_RUN / "merged"
    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    for f in merged.iterdir():
        if f.suffix == ".safetensors" or f.name in ("config.json", "generation_config.json"):
            shutil.copy(f, weights_only / f.name)
    assert [p.split(":")[0] for p in merged_problems(weights_only)] == ["processor"]
    base_saved = tmp_path / "base"  # the base saved as if merged: the adapter never reached the weights
    AutoModelForImageTextToText.from_pretrained(QWEN, dtype=torch.bfloat16).save_pretrained(base_saved)
    for f in merged.iterdir():
        if f.suffix != ".safetensors" and f.name not in ("config.json", "generation_config.json"):
            shutil.copy(f, base_saved / f.name)
    assert merged_problems(base_saved) == ["no weight differs from the base: nothing merged"]


# Notebook 06 ---------------------------------------------------------------------------------------------------------

def newest_checkpoint(run: Path) -> Path:
    """The `checkpoint-N` folder of `run` with the largest N."""
    found = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert found, f"no checkpoint in {run}"
    return found[-1]


def grpo_rows(run: Path) -> list[dict]:
    """The GRPO trainer's per-step logs (rows with a reward) from the newest checkpoint's trainer_state.json."""
    state = json.loads((newest_checkpoint(run) / "trainer_state.json").read_text())
    return [row for row in state["log_history"] if "reward" in row]


def mean(key: str, rows: list[dict]) -> float:
    """Mean of a logged metric over some steps."""
    return sum(row[key] for row in rows) / len(rows)


def grpo_problems(rows: list[dict]) -> list[str]:
    """What the per-step logs show wrong (notebook 06's early-vs-late comparison): a learning signal (some group with
    a reward spread) in fewer than half of the steps, a step with a spread but no gradient, or a format reward that
    did not rise by more than 0.1 from the first 5 steps to the second half of the run."""
    if len(rows) < 10:
        return [f"{len(rows)} logged steps"]
    problems = []
    with_signal = sum(row["frac_reward_zero_std"] < 1 for row in rows)
    if with_signal < len(rows) // 2:
        problems.append(f"a learning signal in {with_signal} of {len(rows)} steps")
    dead = [row["step"] for row in rows if row["reward_std"] > 0 and not row["grad_norm"] > 0]
    if dead:
        problems.append(f"no gradient in steps {dead}")
    first, second_half = mean(FORMAT, rows[:5]), mean(FORMAT, rows[len(rows) // 2:])
    if not second_half > first + 0.1:
        problems.append(f"format reward {first:.2f} in the first 5 steps, {second_half:.2f} in the second half")
    return problems


def adapter_problems(folder: Path) -> list[str]:
    """What is wrong with a saved GRPO adapter: LoRA tensors for notebook 06's targets, every B moved away from its zero
    start (gradients reached the adapter)."""
    config = json.loads((folder / "adapter_config.json").read_text())
    tensors = load_file(folder / "adapter_model.safetensors")
    problems = [] if set(config["target_modules"]) == {"q_proj", "v_proj"} else [f"targets {config['target_modules']}"]
    b = {k: v for k, v in tensors.items() if "lora_B" in k}
    if not b:
        return problems + ["no LoRA B tensors"]
    untrained = [k for k, v in b.items() if not v.abs().sum() > 0]
    return problems + ([f"{len(untrained)} of {len(b)} LoRA B tensors still zero"] if untrained else [])


@pytest.fixture(scope="module")
def grpo_run(recipe_runs):
    done = recipe_runs.run("06")
    assert done.returncode == 0, (done.stdout or "")[-2000:] + (done.stderr or "")[-4000:]
    return recipe_runs.home / "runs" / GRPO_RUN


def test_grpo_run_learns(grpo_run):
    rows = grpo_rows(grpo_run)
    assert grpo_problems(rows) == [], rows


def test_negative_control_grpo_logs_without_the_trend_or_the_signal_fail(grpo_run):
    rows = grpo_rows(grpo_run)
    flat = copy.deepcopy(rows)
    level = mean(FORMAT, rows)
    for row in flat:
        row[FORMAT] = level  # the real run with the format reward's trend removed
    assert [p.split(" in the first")[0] for p in grpo_problems(flat)] == [f"format reward {level:.2f}"]
    reversed_trend = copy.deepcopy(rows)
    for row, value in zip(reversed_trend, reversed([row[FORMAT] for row in rows])):
        row[FORMAT] = value
    assert [p.split(" ")[0] for p in grpo_problems(reversed_trend)] == ["format"]
    silent = [row | {"frac_reward_zero_std": 1.0} for row in rows]  # every group's answers scored alike
    assert grpo_problems(silent) == [f"a learning signal in 0 of {len(rows)} steps"]
    no_gradient = [row | {"grad_norm": 0.0} for row in rows]
    assert grpo_problems(no_gradient) == [
        f"no gradient in steps {[row['step'] for row in rows if row['reward_std'] > 0]}"]


def test_grpo_adapter_is_saved_and_trained(grpo_run):
    assert adapter_problems(grpo_run / "adapter") == []


def test_negative_control_an_untrained_adapter_is_found(grpo_run, tmp_path):
    tensors = load_file(grpo_run / "adapter" / "adapter_model.safetensors")
    save_file({k: torch.zeros_like(v) if "lora_B" in k else v for k, v in tensors.items()},
              tmp_path / "adapter_model.safetensors")  # B as LoRA initialises it: the adapter is a no-op
    shutil.copy(grpo_run / "adapter" / "adapter_config.json", tmp_path)
    count = sum("lora_B" in k for k in tensors)
    assert adapter_problems(tmp_path) == [f"{count} of {count} LoRA B tensors still zero"]
