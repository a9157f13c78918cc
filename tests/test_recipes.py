"""The recipes a reader copies out of notebooks 03 and 04 (the code cells tagged `recipe`) stand on their own: they run
in a fresh interpreter in tiny mode after the mode cell, with nothing from `helpers` but `resolve` (and the resume
call `train_resumable`); the formatters they define are `helpers.data`'s, character for character in the syntax tree;
and the scripts' defaults are their literal values (notebook 06's too, for scripts/grpo.py)."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from test_scripts import load_script  # scripts/<name>.py as a module

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {name: next((ROOT / "notebooks").glob(f"{name}_*.ipynb")) for name in ("03", "04")}
RECIPE = "recipe"
# What a recipe cell may take from helpers: the tiny switch's hub-id mapping, and resuming (helpers, per issue 18)
RECIPE_IMPORTS = {"helpers.tiny": {"resolve"}, "helpers.training": {"train_resumable"}}
# Run in the fresh interpreter before the cells: the notebook kernels' start-up (no network, bitsandbytes' CPU fix) and
# an import guard for the cells' own imports (`__name__` tells a recipe cell from the mode cell and from library code).
PRELUDE = f"""
import builtins, sys
sys.path.insert(0, {str(ROOT / "tests")!r})
import bnb_cpu, netguard
netguard.install()
bnb_cpu.install()
ALLOWED = {RECIPE_IMPORTS!r}
_import = builtins.__import__

def guarded(name, globals=None, locals=None, fromlist=(), level=0):
    if (globals or {{}}).get("__name__") == "__recipe__" and name.split(".")[0] == "helpers":
        if not fromlist or not set(fromlist) <= ALLOWED.get(name, set()):
            raise ImportError(f"a recipe cell imports {{list(fromlist or [])}} from {{name}}: it may import only "
                              f"{{ALLOWED}}")
    return _import(name, globals, locals, fromlist, level)

builtins.__import__ = guarded
"""


def notebook(name: str) -> nbformat.NotebookNode:
    """Notebook `name` (03 or 04)."""
    return nbformat.read(NOTEBOOKS[name], as_version=4)


def recipe_cells(nb: nbformat.NotebookNode) -> list[str]:
    """The sources of the cells tagged `recipe`, as Python (IPython syntax transformed)."""
    return [TransformerManager().transform_cell(c.source) for c in nb.cells
            if c.cell_type == "code" and RECIPE in c.metadata.get("tags", [])]


def mode_cell(nb: nbformat.NotebookNode) -> str:
    """The mode line's cell (cell 3): the switch, the data settings and tiny mode's overrides."""
    return nb.cells[3].source


def script(mode: str, cells: list[str]) -> str:
    """A program that runs the mode cell, then each recipe cell in one namespace, as a fresh kernel would."""
    body = [PRELUDE, "import time", "ns = {'__name__': '__mode__'}",
            f"exec(compile({mode!r}, '<mode cell>', 'exec'), ns)", "ns['__name__'] = '__recipe__'"]
    for i, cell in enumerate(cells):
        body += ["start = time.perf_counter()", f"exec(compile({cell!r}, '<recipe cell {i}>', 'exec'), ns)",
                 f"print('--- recipe cell {i}: %.1f s' % (time.perf_counter() - start), flush=True)"]
    return "\n".join(body)


def shared_cache(tmp_path: Path) -> Path:
    """A cache with its own run folders and the tiny checkpoints of this session's cache (built once, linked)."""
    from tinyenv import hub as tiny

    for hub_id in ("Qwen/Qwen2-VL-7B-Instruct", "HuggingFaceM4/idefics2-8b"):
        tiny.snapshot(hub_id)  # builds it if needed
    cache = tmp_path / "cache"
    cache.mkdir(parents=True)
    for built in tiny.cache_dir().glob("tiny-*"):
        (cache / built.name).symlink_to(built)
    return cache


def run(source: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `source` in a fresh interpreter in tiny mode, offline, with this repository's helpers."""
    env = os.environ | {"COOKBOOK_TINY": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg",
                        "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT),
                        "COOKBOOK_CACHE": str(shared_cache(tmp_path)), "TRACKIO_DIR": str(tmp_path / "trackio")}
    return subprocess.run([sys.executable, "-c", source], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_recipe_cells_run_on_their_own(name, tmp_path):
    nb = notebook(name)
    cells = recipe_cells(nb)
    assert len(cells) >= 6, "formatter, processor and data, model, LoRA, config and trainer, train"
    done = run(script(mode_cell(nb), cells), tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert f"--- recipe cell {len(cells) - 1}:" in done.stdout


def test_negative_control_a_recipe_cell_using_helpers_or_a_non_recipe_global_fails(tmp_path):
    """Each fault goes into notebook 03's first recipe cell (the formatter), which runs alone after the mode cell (as
    it does unchanged in test_recipe_cells_run_on_their_own)."""
    mode, (first, *_) = mode_cell(notebook("03")), recipe_cells(notebook("03"))
    done = run(script(mode, ["from helpers.data import format_chartqa\n" + first]), tmp_path / "helpers")
    assert done.returncode and "ImportError: a recipe cell imports ['format_chartqa'] from helpers.data" in done.stderr
    done = run(script(mode, ["from helpers.tiny import tiny_run_dir\n" + first]), tmp_path / "tiny")  # the mode cell's
    assert done.returncode and "ImportError: a recipe cell imports ['tiny_run_dir']" in done.stderr
    done = run(script(mode, [first + "\nprint(MAX_TOKENS)"]), tmp_path / "global")  # set by the validation cell
    assert done.returncode and "NameError: name 'MAX_TOKENS' is not defined" in done.stderr


# The formatters: the notebooks define them, helpers.data holds them, and the two are the same code -----------------

FORMATTERS = {"03": ["CHARTQA_SYSTEM", "format_chartqa", "PRODUCT_SYSTEM", "format_product_description"],
              "04": ["format_rlaif_v"]}


def definitions(source: str) -> dict[str, str]:
    """`ast.dump` of each top-level function and assignment of `source`, by name."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = ast.dump(node)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = ast.dump(node)
    return found


def formatter_differences(cells: list[str]) -> list[str]:
    """Names defined in `cells` (FORMATTERS' names) whose syntax tree differs from helpers/data.py's, or missing."""
    helpers = definitions((ROOT / "helpers" / "data.py").read_text())
    ours = {k: v for cell in cells for k, v in definitions(cell).items()}
    names = [n for n in sum(FORMATTERS.values(), []) if n in ours]
    return [n for n in names if ours[n] != helpers.get(n)]


@pytest.mark.parametrize("name", sorted(FORMATTERS))
def test_the_notebooks_formatters_are_helpers_data_s(name):
    cells = recipe_cells(notebook(name))
    defined = {k for cell in cells for k in definitions(cell)}
    assert set(FORMATTERS[name]) <= defined, "each formatter is defined in a recipe cell"
    assert formatter_differences(cells) == []


def test_negative_control_a_drifted_formatter_is_found():
    cells = recipe_cells(notebook("03"))
    drifted = [c.replace('example["label"][0]', 'example["label"][-1]') for c in cells]
    assert drifted != cells and formatter_differences(drifted) == ["format_chartqa"]
    reworded = [c.replace("chart analyst", "chart reader") for c in cells]
    assert formatter_differences(reworded) == ["CHARTQA_SYSTEM"]


# Tiny mode's overrides: dataclasses.replace builds the config again, exactly as the literal call with the new values --

def test_replace_builds_the_config_the_literal_call_with_the_overrides_builds(tmp_path):
    from trl import DPOConfig, SFTConfig

    for name, config in (("03", SFTConfig), ("04", DPOConfig)):
        nb = notebook(name)
        kwargs = config_literals(recipe_cells(nb), config.__name__) | {"output_dir": str(tmp_path), "use_cpu": True}
        overrides = tiny_overrides(mode_cell(nb)) | {"output_dir": str(tmp_path / "tiny")}
        assert {"learning_rate", "max_steps"} <= set(overrides)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            replaced = dataclasses.replace(config(**kwargs), **overrides)
        assert replaced.to_dict() == config(**kwargs | overrides).to_dict()
    # negative control: assigning a field skips __post_init__ (which makes "none" an empty list), and the test sees it
    patched = config(**kwargs)
    patched.report_to = "none"
    assert patched.to_dict() != config(**kwargs | {"report_to": "none"}).to_dict()


def tiny_overrides(mode: str) -> dict:
    """The `TINY_ARGS = dict(...)` of the mode cell's `if TINY:` block, literal values only."""
    block = next(n for n in ast.parse(mode).body if isinstance(n, ast.If))
    call = next(n.value for n in block.body if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", None) == "TINY_ARGS")
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if literal(k.value)}


# The scripts' defaults are the notebooks' recipe values -------------------------------------------------------------

def literal(node: ast.AST) -> bool:
    """Whether `node` is a literal (numbers, strings, lists, dicts, None, True, False)."""
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def calls(cells: list[str], func: str) -> list[ast.Call]:
    """Every call of `func` (a name or an attribute) in `cells`."""
    return [n for cell in cells for n in ast.walk(ast.parse(cell)) if isinstance(n, ast.Call)
            and func in (getattr(n.func, "id", None), getattr(n.func, "attr", None))]


def config_literals(cells: list[str], func: str) -> dict:
    """The literal keyword arguments of the one call of `func` in `cells`."""
    (call,) = calls(cells, func)
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if literal(k.value)}


def settings(mode: str, names: dict | None = None) -> dict:
    """The upper-case settings the mode cell assigns before its `if TINY:` block: the Colab recipe's values (`names`:
    what their expressions may read)."""
    values = {}
    for node in ast.parse(mode).body:
        if isinstance(node, ast.If):
            break
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper():
            try:
                expression = compile(ast.Expression(node.value), "<mode>", "eval")
                values[node.targets[0].id] = eval(expression, dict(names or {}))  # noqa: S307
            except NameError:  # TINY = is_tiny(): not a setting
                pass
    return values


def hub_ids(cells: list[str]) -> list[str]:
    """The hub ids the cells pass to `resolve`, in order."""
    return [ast.literal_eval(c.args[0]) for c in calls(cells, "resolve")]


def script_defaults(name: str, tmp_path: Path) -> tuple:
    """(recipe arguments, training arguments, model arguments, LoRA config) as scripts/<name>.py parses no flags
    (but the output folder, and use_cpu: bf16 on a CPU needs it)."""
    from trl import DPOConfig, ModelConfig, SFTConfig, get_peft_config

    from trl import GRPOConfig

    module = load_script(name)
    config = {"sft": SFTConfig, "dpo": DPOConfig, "grpo": GRPOConfig}[name]
    recipe, args, model_args = module.parse((module.RecipeArguments, config, ModelConfig), module.DEFAULTS,
                                            ["--output_dir", str(tmp_path), "--use_cpu", "true"])
    return recipe, args, model_args, get_peft_config(model_args)


def targets(value) -> set:
    """LoRA target modules as a set, whether given as a string or a list."""
    return {value} if isinstance(value, str) else set(value)


def script_mismatches(name: str, script: str, tmp_path: Path, cells: list[str] | None = None,
                      mode: str | None = None) -> list[str]:
    """Each recipe value of notebook `name` that scripts/`script`.py's defaults disagree with, as 'what: ours vs its'."""
    from trl import DPOConfig, SFTConfig

    nb = notebook(name)
    cells, mode = cells or recipe_cells(nb), mode or mode_cell(nb)
    recipe, args, model_args, lora = script_defaults(script, tmp_path)
    config = {"sft": SFTConfig, "dpo": DPOConfig}[script]
    literals = config_literals(cells, config.__name__)
    ours = config(**literals | {"output_dir": str(tmp_path), "use_cpu": True})  # bf16 on a CPU needs use_cpu
    pairs = [(f"{config.__name__}.{k}", getattr(ours, k), getattr(args, k)) for k in literals if k != "output_dir"]
    (lora_call,) = calls(cells, "LoraConfig")
    for k in lora_call.keywords:
        value = ast.literal_eval(k.value)
        theirs = getattr(lora, k.arg)
        pairs.append((f"LoraConfig.{k.arg}", targets(value) if k.arg == "target_modules" else value,
                      targets(theirs) if k.arg == "target_modules" else theirs))
    model_id, dataset = hub_ids(cells)[:2]
    pairs += [("model", model_id, model_args.model_name_or_path), ("data set", dataset, recipe.dataset_name)]
    loads = calls(cells, "from_pretrained")
    dtype = next(ast.unparse(k.value) for c in loads for k in c.keywords if k.arg == "dtype")
    pairs.append(("model dtype", dtype, f"torch.{model_args.dtype}"))
    quantized = calls(cells, "BitsAndBytesConfig")
    quant = {k.arg: ast.literal_eval(k.value) for c in quantized for k in c.keywords if literal(k.value)}
    pairs += [("4-bit", bool(quant.get("load_in_4bit")), bool(model_args.load_in_4bit))]
    if quant:
        pairs += [("NF4", quant["bnb_4bit_quant_type"], model_args.bnb_4bit_quant_type),
                  ("double quantisation", quant["bnb_4bit_use_double_quant"], model_args.use_bnb_nested_quant)]
    values = settings(mode)
    if script == "sft":
        pairs += [("train split", values["SPLITS"][0], recipe.dataset_train_split),
                  ("eval split", values["SPLITS"][1], recipe.dataset_test_split),
                  ("image-token cap", values["MAX_PIXELS"], recipe.max_pixels)]
    else:
        pairs += [("train split", values["SPLIT"], recipe.dataset_train_split),
                  ("Qwen2-VL image-token cap", values["QWEN_MAX_PIXELS"], recipe.max_pixels)]
    return [f"{what}: {a!r} vs {b!r}" for what, a, b in pairs if a != b]


@pytest.mark.parametrize("name, script", [("03", "sft"), ("04", "dpo")])
def test_script_defaults_are_the_notebook_recipe(name, script, tmp_path):
    assert script_mismatches(name, script, tmp_path) == []


def test_negative_control_a_changed_notebook_value_is_found(tmp_path):
    cells = recipe_cells(notebook("03"))
    changed = [c.replace("learning_rate=2e-4", "learning_rate=3e-4").replace("lora_alpha=16", "lora_alpha=32")
               for c in cells]
    assert changed != cells
    mode = mode_cell(notebook("03")).replace('"train[:10%]"', '"train[:20%]"')
    found = script_mismatches("03", "sft", tmp_path, changed, mode)
    assert found == ["SFTConfig.learning_rate: 0.0003 vs 0.0002", "LoraConfig.lora_alpha: 32 vs 16",
                     "train split: 'train[:20%]' vs 'train[:10%]'"], found


# Tiny mode lives in two places: the mode cell's overrides and one labelled check cell -----------------------------

def tiny_mode_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Code cells after the mode cell that read TINY, except one `if TINY:` check cell under a "## Tiny-mode check"
    heading and the config cells' `replace(args, **TINY_ARGS)` (notebook 06: `GRPOConfig(**recipe | TINY_ARGS)`)."""
    problems, checks = [], 0
    for i, cell in enumerate(nb.cells[4:], start=4):
        if cell.cell_type != "code":
            continue
        names = {n.id for n in ast.walk(ast.parse(TransformerManager().transform_cell(
            cell.source.replace("replace(args, **TINY_ARGS)", "replace(args)")
            .replace("**recipe | TINY_ARGS", "**recipe")))) if isinstance(n, ast.Name)}
        if not names & {"TINY", "TINY_ARGS"}:
            continue
        if cell.source.startswith("if TINY:") and nb.cells[i - 1].source.startswith("## Tiny-mode check"):
            checks += 1
        else:
            problems.append(f"cell {i} reads tiny mode: {cell.source.splitlines()[0]}")
    return problems + ([f"{checks} tiny-mode check cells"] if checks > 1 else [])


@pytest.mark.parametrize("name", ["01", "03", "04", "06"])
def test_tiny_mode_changes_numbers_only_in_the_mode_cell(name):
    assert tiny_mode_problems(nbformat.read(next((ROOT / "notebooks").glob(f"{name}_*.ipynb")), as_version=4)) == []


def test_negative_control_a_tiny_branch_in_a_config_cell_is_found():
    nb = notebook("03")
    i = next(i for i, c in enumerate(nb.cells) if "SFTConfig(" in c.source)
    nb.cells[i].source = nb.cells[i].source.replace("learning_rate=2e-4", "learning_rate=1e-2 if TINY else 2e-4")
    assert tiny_mode_problems(nb) == [f"cell {i} reads tiny mode: from dataclasses import replace"]


def test_negative_control_a_tiny_branch_in_notebook_06_s_config_is_found():
    nb = nbformat.read(NOTEBOOK_06, as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "GRPOConfig(" in c.source)
    nb.cells[i].source = nb.cells[i].source.replace("learning_rate=1e-5", "learning_rate=2e-2 if TINY else 1e-5")
    assert tiny_mode_problems(nb) == [f"cell {i} reads tiny mode: from trl import GRPOConfig, GRPOTrainer"]


# Notebook 06 and scripts/grpo.py: the same recipe values -----------------------------------------------------------

NOTEBOOK_06 = next((ROOT / "notebooks").glob("06_*.ipynb"))


def assigned_call(cells: list[str], name: str) -> dict:
    """The literal keyword arguments of the call assigned to `name` (`name = dict(...)`) in `cells`."""
    (call,) = [n.value for cell in cells for n in ast.parse(cell).body if isinstance(n, ast.Assign)
               and getattr(n.targets[0], "id", None) == name and isinstance(n.value, ast.Call)]
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if literal(k.value)}


def assigned_string(cells: list[str], name: str) -> str:
    """The string literal assigned to `name` (`model_id = "..."`) in `cells`."""
    (value,) = [n.value.value for cell in cells for n in ast.parse(cell).body if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", None) == name and isinstance(n.value, ast.Constant)]
    return value


def reward_names(source: str) -> list[str]:
    """The names in the `reward_funcs=[...]` of the GRPOTrainer call in `source`."""
    (call,) = calls([source], "GRPOTrainer")
    (rewards,) = [k.value for k in call.keywords if k.arg == "reward_funcs"]
    return [ast.unparse(e) for e in rewards.elts]


def grpo_mismatches(tmp_path: Path, cells: list[str] | None = None, mode: str | None = None) -> list[str]:
    """Each recipe value of notebook 06 that scripts/grpo.py's defaults disagree with, as 'what: ours vs its'."""
    from trl import GRPOConfig

    nb = nbformat.read(NOTEBOOK_06, as_version=4)
    code = [TransformerManager().transform_cell(c.source) for c in nb.cells if c.cell_type == "code"]
    cells, mode = cells or code[3:], mode or nb.cells[3].source  # code[3:]: from the parameters cell on (cell 3)
    recipe, args, model_args, lora = script_defaults("grpo", tmp_path)
    literals = config_literals(cells, "GRPOConfig")
    ours = GRPOConfig(**literals | {"output_dir": str(tmp_path), "use_cpu": True})  # bf16 on a CPU needs use_cpu
    keys = [k for k in literals if k != "output_dir"] + ["max_steps"]  # max_steps: the default, one epoch decides
    pairs = [(f"GRPOConfig.{k}", getattr(ours, k), getattr(args, k)) for k in keys]
    for k, value in assigned_call(cells, "LORA").items():
        theirs = getattr(lora, k)
        pairs.append((f"LoRA {k}", targets(value) if k == "target_modules" else value,
                      targets(theirs) if k == "target_modules" else theirs))
    (dataset,) = {ast.literal_eval(c.args[0]) for c in calls(cells, "load_dataset")}
    model_id = assigned_string(cells, "model_id")
    pairs += [("model", model_id, model_args.model_name_or_path), ("data set", dataset, recipe.dataset_name)]
    dtype = next(ast.unparse(k.value) for c in calls(cells, "from_pretrained") for k in c.keywords if k.arg == "dtype")
    pairs += [("model dtype", dtype, f"torch.{model_args.dtype}"), ("4-bit", False, bool(model_args.load_in_4bit))]
    pairs += [("rewards", reward_names("\n".join(cells)), reward_names((ROOT / "scripts" / "grpo.py").read_text()))]
    values = settings(mode)
    pairs += [("train split", values["TRAIN_SPLIT"], recipe.dataset_train_split),
              ("image-token cap", values["MAX_PIXELS"], recipe.max_pixels)]
    return [f"{what}: {a!r} vs {b!r}" for what, a, b in pairs if a != b]


def test_grpo_script_defaults_are_notebook_06_s_recipe(tmp_path):
    assert grpo_mismatches(tmp_path) == []


def test_negative_control_a_changed_notebook_06_value_is_found(tmp_path):
    nb = nbformat.read(NOTEBOOK_06, as_version=4)
    cells = [TransformerManager().transform_cell(c.source) for c in nb.cells if c.cell_type == "code"][3:]
    changed = [c.replace("beta=0.04", "beta=0.1").replace("num_generations=8,", "num_generations=4,")
               .replace("lora_dropout=0.0", "lora_dropout=0.05").replace("[correctness_reward, format_reward]",
                                                                       "[format_reward, correctness_reward]")
               for c in cells]
    assert changed != cells
    mode = nb.cells[3].source.replace('"train[10%:12%]"', '"train[10%:14%]"')
    found = grpo_mismatches(tmp_path, changed, mode)
    assert found == ["GRPOConfig.num_generations: 4 vs 8", "GRPOConfig.beta: 0.1 vs 0.04",
                     "LoRA lora_dropout: 0.05 vs 0.0",
                     "rewards: ['format_reward', 'correctness_reward'] vs ['correctness_reward', 'format_reward']",
                     "train split: 'train[10%:14%]' vs 'train[10%:12%]'"], found
