"""The recipes a reader copies out of notebooks 03 and 04 (the `parameters` cell and the code cells tagged `recipe`;
tests/test_copy.py runs the copies): the formatters they define are `helpers.data`'s, character for character in the
syntax tree; the second run each derives with `dataclasses.replace` is the literal config with another folder; and the
scripts' defaults are their literal values (notebook 06's too, for scripts/grpo.py)."""

from __future__ import annotations

import ast
import dataclasses
import re
import warnings
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from copies import tagged  # a notebook's cells with one tag, as Python
from test_scripts import load_script  # scripts/<name>.py as a module

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {name: next((ROOT / "notebooks").glob(f"{name}_*.ipynb")) for name in ("03", "04")}
RECIPE = "recipe"


def notebook(name: str) -> nbformat.NotebookNode:
    """Notebook `name` (03 or 04)."""
    return nbformat.read(NOTEBOOKS[name], as_version=4)


def recipe_cells(nb: nbformat.NotebookNode) -> list[str]:
    """The sources of the cells tagged `recipe`, as Python (IPython syntax transformed)."""
    return tagged(nb, RECIPE)


def parameters_cell(nb: nbformat.NotebookNode) -> str:
    """The cell tagged `parameters` (cell 3): the settings a reader changes, with their Colab values."""
    (source,) = [c.source for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return source


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


# The second run of each notebook (03 section 9, 04 section 8) is `dataclasses.replace(args, output_dir=...)`: it builds
# the config again, exactly as the literal call with the other folder -----------------------------------------------

def replace_calls(cells: list[str]) -> list[ast.Call]:
    """Every call of the bare name `replace` (dataclasses.replace) in `cells`."""
    return [c for c in calls(cells, "replace") if isinstance(c.func, ast.Name)]


def test_replace_builds_the_config_the_literal_call_with_the_other_folder_builds(tmp_path):
    from trl import DPOConfig, SFTConfig

    for name, config in (("03", SFTConfig), ("04", DPOConfig)):
        cells = recipe_cells(notebook(name))
        (call,) = replace_calls(cells)
        assert [k.arg for k in call.keywords] == ["output_dir"], ast.unparse(call)
        kwargs = config_literals(cells, config.__name__) | {"output_dir": str(tmp_path), "use_cpu": True}
        assert {"learning_rate", "num_train_epochs"} <= set(kwargs)
        other = {"output_dir": str(tmp_path / "other")}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            replaced = dataclasses.replace(config(**kwargs), **other)
        assert replaced.to_dict() == config(**kwargs | other).to_dict()
    # negative control: assigning a field skips __post_init__ (which makes "none" an empty list), and the test sees it
    patched = config(**kwargs)
    patched.report_to = "none"
    assert patched.to_dict() != config(**kwargs | {"report_to": "none"}).to_dict()


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


def settings(source: str, names: dict | None = None) -> dict:
    """The upper-case settings a parameters cell assigns (before any `if` block): the Colab recipe's values (`names`:
    what their expressions may read; a setting that reads anything else is left out)."""
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If):
            break
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper():
            try:
                expression = compile(ast.Expression(node.value), "<parameters>", "eval")
                values[node.targets[0].id] = eval(expression, dict(names or {}))  # noqa: S307
            except NameError:  # RUNS reads sys.modules: a place, not a recipe value
                pass
    return values


HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # owner/name


def hub_ids(cells: list[str]) -> list[str]:
    """The hub ids the cells name (string literals shaped `owner/name`), in the order they appear."""
    found = []
    for cell in cells:
        strings = [n for n in ast.walk(ast.parse(cell)) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        found += [n.value for n in sorted(strings, key=lambda n: (n.lineno, n.col_offset)) if HUB_ID.fullmatch(n.value)]
    return found


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
                      parameters: str | None = None) -> list[str]:
    """Each recipe value of notebook `name` that scripts/`script`.py's defaults disagree with, as 'what: ours vs its'."""
    from trl import DPOConfig, SFTConfig

    nb = notebook(name)
    cells, parameters = cells or recipe_cells(nb), parameters or parameters_cell(nb)
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
    values = settings(parameters)
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
    parameters = parameters_cell(notebook("03")).replace('"train[:10%]"', '"train[:20%]"')
    found = script_mismatches("03", "sft", tmp_path, changed, parameters)
    assert found == ["SFTConfig.learning_rate: 0.0003 vs 0.0002", "LoraConfig.lora_alpha: 32 vs 16",
                     "train split: 'train[:20%]' vs 'train[:10%]'"], found


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
