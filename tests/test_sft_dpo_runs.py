"""What the runs of notebooks 03 and 04 must show in the tiny environment, or the recipe is broken. A reader's copy of
each notebook (its parameters and recipe cells, tests/copies.py) runs to the end; these tests read what the runs left
in `runs/`: the `trainer_state.json` of each run's last checkpoint, and the adapters notebooks 05 and 06 load.

- 03, SFT: overfitting 16 charts drives the ChartQA training loss below half its first log; on the 12 product photos
  of section 9 the loss falls too.
- 04, DPO: on 16 pairs the reward margin grows (by more than 0.5 for idefics2) and the pairs end up ranked right more
  often than chance, for idefics2 and for Qwen2-VL (section 8).

The tiny models learn tiny things: these say that the machinery trains, nothing about the real models' quality. Each
check has a negative control: the same history with its trend removed (or the adapter's weights missing) fails it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

SFT_RUNS = {"qwen2vl-7b-chartqa": 0.5, "qwen2vl-7b-chartqa-products": 1.0}  # run -> last loss below this x first
DPO_RUNS = {"idefics2-8b-dpo": 0.5, "qwen2vl-7b-dpo": 0.0}  # run -> the margin's least growth, first log to last
ADAPTERS = {"03": "qwen2vl-7b-chartqa", "04": "idefics2-8b-dpo"}  # the adapters notebooks 05 and 06 load


def finished(recipe_runs, name: str) -> Path:
    """`runs/` of the reader's project after the copy of notebook `name` ran to the end."""
    done = recipe_runs.run(name)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return recipe_runs.home / "runs"


def last_state(run: Path) -> dict:
    """The `trainer_state.json` of the newest `checkpoint-N` in `run`: the run's whole log history."""
    steps = sorted((int(m.group(1)), p) for p in run.glob("checkpoint-*")
                   if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
    assert steps, f"no checkpoint in {run}"
    return json.loads((steps[-1][1] / "trainer_state.json").read_text())


def logged(state: dict, key: str) -> list[float]:
    """The values of `key` in the log history, in order (training logs only: eval logs carry `eval_` keys)."""
    return [row[key] for row in state["log_history"] if key in row]


def detrended(values: list[float]) -> list[float]:
    """`values` with their trend removed: every value replaced by their mean (the same numbers, no learning)."""
    mean = sum(values) / len(values)
    return [mean] * len(values)


def sft_problems(state: dict, factor: float) -> list[str]:
    """What is wrong with an SFT run's history: unfinished, too few loss logs, or a last loss not below `factor` x the
    first."""
    problems = [] if state["global_step"] == state["max_steps"] else [f"stopped at step {state['global_step']}"]
    losses = logged(state, "loss")
    if len(losses) < 2:
        return problems + [f"{len(losses)} loss logs"]
    if not losses[-1] < factor * losses[0]:
        problems.append(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, not below {factor} x the first: {losses}")
    return problems


def dpo_problems(state: dict, growth: float) -> list[str]:
    """What is wrong with a DPO run's history: unfinished, a margin that does not grow by more than `growth`, or a
    final reward accuracy not above chance."""
    problems = [] if state["global_step"] == state["max_steps"] else [f"stopped at step {state['global_step']}"]
    margins, accuracies = logged(state, "rewards/margins"), logged(state, "rewards/accuracies")
    if len(margins) < 2:
        return problems + [f"{len(margins)} margin logs"]
    if not margins[-1] > margins[0] + growth:
        problems.append(f"margin {margins[0]:.3f} -> {margins[-1]:.3f}, not up by more than {growth}: {margins}")
    if not accuracies[-1] > 0.5:
        problems.append(f"final reward accuracy {accuracies[-1]:.2f}, not above chance: {accuracies}")
    return problems


def with_logs(state: dict, key: str, values: list[float]) -> dict:
    """`state` with the logged values of `key` replaced by `values`, in order."""
    it = iter(values)
    history = [row | {key: next(it)} if key in row else row for row in state["log_history"]]
    return state | {"log_history": history}


def adapter_problems(folder: Path) -> list[str]:
    """The files of a saved LoRA adapter (what `PeftModel.from_pretrained` reads) that `folder` lacks or has empty."""
    return [name for name in ("adapter_config.json", "adapter_model.safetensors")
            if not (folder / name).is_file() or (folder / name).stat().st_size == 0]


# Notebook 03: the loss falls --------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", sorted(SFT_RUNS))
def test_the_sft_loss_falls(recipe_runs, run):
    assert sft_problems(last_state(finished(recipe_runs, "03") / run), SFT_RUNS[run]) == []


def test_negative_control_a_loss_that_does_not_fall_is_caught(recipe_runs):
    for run, factor in SFT_RUNS.items():
        state = last_state(finished(recipe_runs, "03") / run)
        flat = with_logs(state, "loss", detrended(logged(state, "loss")))
        assert sft_problems(flat, factor) and sft_problems(flat, factor)[0].startswith("loss "), run
        rising = with_logs(state, "loss", logged(state, "loss")[::-1])
        assert sft_problems(rising, factor), run
    cut_short = state | {"global_step": state["max_steps"] // 2}  # the products run, stopped half-way
    assert sft_problems(cut_short, SFT_RUNS["qwen2vl-7b-chartqa-products"])[0].startswith("stopped at step")


# Notebook 04: the reward margin grows, the pairs are ranked right ----------------------------------------------------

@pytest.mark.parametrize("run", sorted(DPO_RUNS))
def test_the_dpo_margin_grows_and_pairs_rank_right(recipe_runs, run):
    assert dpo_problems(last_state(finished(recipe_runs, "04") / run), DPO_RUNS[run]) == []


def test_negative_control_a_margin_that_does_not_grow_is_caught(recipe_runs):
    for run, growth in DPO_RUNS.items():
        state = last_state(finished(recipe_runs, "04") / run)
        flat = with_logs(state, "rewards/margins", detrended(logged(state, "rewards/margins")))
        assert [p for p in dpo_problems(flat, growth) if p.startswith("margin ")], run
        chance = with_logs(state, "rewards/accuracies", [0.5] * len(logged(state, "rewards/accuracies")))
        assert [p for p in dpo_problems(chance, growth) if p.startswith("final reward accuracy")], run
    # idefics2's margin must grow by more than 0.5: a growth just under it fails
    state = last_state(finished(recipe_runs, "04") / "idefics2-8b-dpo")
    margins = logged(state, "rewards/margins")
    small = with_logs(state, "rewards/margins", [margins[0]] * (len(margins) - 1) + [margins[0] + 0.49])
    assert dpo_problems(small, DPO_RUNS["idefics2-8b-dpo"])[0].startswith("margin ")


# The adapters the later notebooks load ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_the_adapter_is_saved_where_the_later_notebooks_load_it(recipe_runs, name):
    assert adapter_problems(finished(recipe_runs, name) / ADAPTERS[name] / "adapter") == []


def test_negative_control_an_adapter_without_weights_is_caught(recipe_runs, tmp_path):
    saved = finished(recipe_runs, "03") / ADAPTERS["03"] / "adapter"
    copy = shutil.copytree(saved, tmp_path / "adapter")
    (copy / "adapter_model.safetensors").unlink()
    assert adapter_problems(copy) == ["adapter_model.safetensors"]
    assert adapter_problems(tmp_path / "nowhere") == ["adapter_config.json", "adapter_model.safetensors"]
