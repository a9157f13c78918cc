"""The Colab path: each notebook's opening cells run as Colab runs them (tests/colab_emulation.py), and what cannot run
here is checked statically: the install cell's pins against requirements.txt, the release tag it clones, and that
every model a notebook loads in real mode is placed on the GPU."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
from colab_emulation import REPO_URL, opening_cells, release_tag, run_cells
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
COLAB_TORCH = {"torch", "torchvision", "torchaudio"}  # Colab's own builds match its CUDA driver: never pinned there
# The install cell before issue 15 (notebook 01's): an editable install, which a running kernel does not see.
OLD_INSTALL = '''# Colab only: install the tested stack and this cookbook's helpers (locally, the README's `make` commands did it).
# Tested with torch==2.14.1 torchvision==0.29.1 transformers==5.23.0 trl==1.16.0 peft==0.21.2 datasets==5.2.0
import sys

if "google.colab" in sys.modules:
    !pip install -q transformers==5.23.0 trl==1.16.0 peft==0.21.2 datasets==5.2.0 accelerate==1.15.0
    !git clone -q https://github.com/vlm-cookbook/vlm-cookbook /content/vlm-cookbook  # helpers + data_samples/configs
    !pip install -q -e /content/vlm-cookbook'''


def requirements() -> dict[str, str]:
    """requirements.txt's pins, name -> version."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def pip_problems(args_list: list[list[str]]) -> list[str]:
    """What is wrong with these `pip install` argument lists: unpinned or mis-pinned packages, torch, editable installs."""
    pins, problems = requirements(), []
    for args in args_list:
        if args[:1] != ["install"]:
            problems.append(f"not an install: {args}")
            continue
        if "-e" in args or "--editable" in args:
            problems.append(f"editable install (invisible until a restart): {args}")
            continue
        for arg in (a for a in args[1:] if not a.startswith("-")):
            name, _, version = arg.partition("==")
            if name.lower() in COLAB_TORCH:
                problems.append(f"{arg}: Colab's torch must stay")
            elif not version or pins.get(name.lower()) != version:
                problems.append(f"{arg}: requirements.txt pins {name}=={pins.get(name.lower())}")
    return problems


def install_cell_pip_args(source: str) -> list[list[str]]:
    """The arguments of every `!pip ...` line of a cell."""
    return [line.strip()[len("!pip "):].split() for line in source.splitlines() if line.strip().startswith("!pip ")]


def tag_problems(source: str) -> list[str]:
    """What is wrong with how the install cell gets the cookbook: not the release tag, or not importable in-kernel."""
    problems = []
    m = re.search(r'^COOKBOOK = "([^"]+)"', source, re.M)
    if not m or m.group(1) != release_tag():
        problems.append(f"COOKBOOK must be the release tag {release_tag()}, got {m and m.group(1)}")
    clone = [line for line in source.splitlines() if "git clone" in line]
    if len(clone) != 1 or "--branch {COOKBOOK}" not in clone[0] or REPO_URL not in clone[0]:
        problems.append(f"one clone of {REPO_URL} at --branch {{COOKBOOK}}: {clone}")
    if 'sys.path.insert(0, "/content/vlm-cookbook")' not in source:
        problems.append("the clone must go on sys.path in this kernel")
    return problems


def unplaced_models(source: str) -> list[str]:
    """Calls in an IPython cell that load a model with `from_pretrained` and no device map (or a CPU/None one).
    Processors, tokenizers, configs and `PeftModel` (an adapter goes where its base is) are not models here."""
    tree = ast.parse(TransformerManager().transform_cell(source))
    bad = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_pretrained"):
            continue
        owner = node.func.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
        if name == "PeftModel" or re.search(r"(Processor|Tokenizer|Config)$", name):
            continue
        device_map = next((k.value for k in node.keywords if k.arg == "device_map"), None)
        if device_map is None or (isinstance(device_map, ast.Constant) and device_map.value in (None, "cpu")):
            bad.append(ast.unparse(node))
    return bad


def drive_template(tmp: Path) -> Path:
    """A Drive with what notebooks 03 and 04 leave on it (the adapter folders notebook 05 checks)."""
    drive = tmp / "drive-template"
    for name in ("qwen2vl-7b-chartqa", "idefics2-8b-dpo"):
        (drive / "vlm-cookbook" / name / "adapter").mkdir(parents=True)
    return drive


def notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at `path`."""
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opening_cells_run_as_on_colab(path, tmp_path):
    nb = notebook(path)
    run = run_cells(opening_cells(nb.cells), tmp_path, drive_template(tmp_path))
    content = tmp_path / "content"
    assert run.error is None, run.error
    assert run.helpers_file and run.helpers_file.startswith(str(content / "vlm-cookbook")), run.helpers_file
    assert run.drive_reads_before_mount == []
    if any("/content/drive" in cell.source for cell in nb.cells):
        assert run.mounted == [str(content / "drive")]
    assert [c for c in run.calls if c[0] == "git"] == [
        ["git", "clone", "-q", "--depth", "1", "--branch", release_tag(), REPO_URL, str(content / "vlm-cookbook")]]
    pip = [c[1:] for c in run.calls if c[0] == "pip"]
    assert pip and pip_problems(pip) == []


def test_negative_control_an_editable_install_fails_the_emulation(tmp_path):
    cells = opening_cells(notebook(NOTEBOOKS[0]).cells)
    run = run_cells([OLD_INSTALL] + cells[2:], tmp_path)  # without the versions cell (its imports take time)
    assert run.helpers_file is None  # the next cell that imports helpers fails
    assert pip_problems([c[1:] for c in run.calls if c[0] == "pip"]), "the editable install is flagged too"


def test_negative_control_a_drive_path_read_before_the_mount_fails_the_emulation(tmp_path):
    path = next(p for p in NOTEBOOKS if p.name.startswith("05"))
    cells = opening_cells(notebook(path).cells)
    mount = next(i for i, c in enumerate(cells) if "drive.mount(" in c)
    reader = next(i for i, c in enumerate(cells) if i > mount and "is_dir()" in c)
    cells[mount], cells[reader] = cells[reader], cells[mount]  # the order notebook 05 had before issue 15
    cells[1] = "import torch"  # instead of the versions cell: the mode cell needs torch only
    run = run_cells(cells[:mount + 1], tmp_path, drive_template(tmp_path))
    assert run.error and run.error.startswith("AssertionError") and "not found" in run.error
    assert run.mounted == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_pins_match_requirements_and_leave_torch_alone(path):
    source = notebook(path).cells[1].source
    assert pip_problems(install_cell_pip_args(source)) == []
    tested = re.search(r"^# Tested with (.*)$", source, re.M).group(1).split()
    pins = requirements()
    assert all(pins.get(t.split("==")[0].lower()) == t.split("==")[1] for t in tested), tested


def test_negative_control_pip_problems_catch_bad_pins():
    assert pip_problems([["install", "-q", "transformers==5.23.0"]]) == []
    assert len(pip_problems([["install", "-q", "transformers==5.22.0", "torch==2.14.1", "trl"]])) == 3
    assert pip_problems([["install", "-q", "-e", "/content/vlm-cookbook"]])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_clones_the_release_tag_onto_sys_path(path):
    assert tag_problems(notebook(path).cells[1].source) == []


def test_release_tag_follows_pyproject_and_negative_controls():
    assert re.fullmatch(r"v\d+\.\d+\.\d+", release_tag())
    assert len(tag_problems(OLD_INSTALL)) == 3
    good = notebook(NOTEBOOKS[0]).cells[1].source
    assert tag_problems(good.replace(f'"{release_tag()}"', '"main"'))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_model_loaded_is_placed_on_the_gpu(path):
    cells = [c.source for c in notebook(path).cells if c.cell_type == "code"]
    assert [bad for source in cells for bad in unplaced_models(source)] == []


def test_negative_control_unplaced_models_are_found():
    source = '''!echo hi
model = AutoModelForImageTextToText.from_pretrained(qwen_id, dtype=dtype)
merged = transformers.Qwen2VLForConditionalGeneration.from_pretrained(path, device_map="cpu")
ok = AutoModelForImageTextToText.from_pretrained(qwen_id, device_map="auto")
processor = AutoProcessor.from_pretrained(qwen_id)
sft = PeftModel.from_pretrained(ok, adapter)'''
    assert len(unplaced_models(source)) == 2


def test_negative_control_a_drive_folder_made_before_the_mount_is_caught(tmp_path):
    path = next(p for p in NOTEBOOKS if p.name.startswith("04"))
    cells = opening_cells(notebook(path).cells)
    mount = next(i for i, c in enumerate(cells) if "drive.mount(" in c)
    early = 'from pathlib import Path\nPath("/content/drive/MyDrive/vlm-cookbook/idefics2-8b-dpo").mkdir(parents=True)'
    cells[1] = "import torch"  # instead of the versions cell: the mode cell needs no more
    run = run_cells(cells[:mount] + [early] + cells[mount:], tmp_path)
    assert run.drive_reads_before_mount and run.drive_reads_before_mount[0][0] == "os.mkdir"
    assert run.error and "Mountpoint must not already contain files" in run.error
