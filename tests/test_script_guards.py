"""The scripts fail fast and say why: a bad argument is one `error:` line before any model loads; dropped rows are
printed (count and first reasons), written to data_report.json, and past --max_dropped_fraction (train) or
--max_dropped_test_fraction (test, default 0) stop the run; `--hub_token` never reaches the run folder."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from datasets import Dataset, Features, List, Value
from datasets import Image as ImageFeature
from PIL import Image
from test_hygiene import token_leaks
from test_scripts import load_script


class ModelLoaded(Exception):
    """Raised instead of loading the model: the run got past every check."""


@pytest.fixture(scope="module")
def scripts():
    return {name: load_script(name) for name in ("sft", "dpo", "grpo")}


@pytest.fixture
def guarded(scripts, monkeypatch):
    """The scripts with model loading replaced by `ModelLoaded`."""
    def load_model(model_args):
        raise ModelLoaded(model_args.model_name_or_path)
    for module in scripts.values():
        monkeypatch.setattr(module, "load_model", load_model)
    return scripts


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def run(module, argv, capsys) -> tuple[int | str, str, str]:
    """(exit code, or 'model loaded'; stdout; stderr) of the script's command line."""
    try:
        module.cli(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    except ModelLoaded:
        code = "model loaded"
    out, err = capsys.readouterr()
    return code, out, err


def base(tmp_path) -> list[str]:
    return ["--output_dir", str(tmp_path / "out"), "--use_cpu", "--report_to", "none"]


CLI_ERRORS = {
    "unknown flag": ("sft", ["--nonsense", "3"], "arguments are not used by the HfArgumentParser: ['--nonsense', '3']"),
    "bad value type": ("sft", ["--learning_rate", "abc"], "--learning_rate/--learning-rate: invalid float value"),
    "negative learning rate": ("sft", ["--learning_rate=-1e-4"], "--learning_rate must be positive, got -0.0001"),
    "max_pixels 0": ("sft", ["--max_pixels", "0"], "--max_pixels must be at least 3136"),
    "max_tokens 0": ("dpo", ["--max_tokens", "0"], "--max_tokens must be positive"),
    "fraction > 1": ("sft", ["--max_dropped_fraction", "2"], "--max_dropped_fraction must be between 0 and 1"),
    "unknown formatter": ("sft", ["--formatter", "chart"], "--formatter must be one of"),
    "unknown dataset": ("sft", ["--dataset_name", "nobody/nothing"], "cannot load --dataset_name 'nobody/nothing'"),
    "unknown model": ("sft", ["--model_name_or_path", "nobody/no-model"],
                      "cannot load the processor of --model_name_or_path 'nobody/no-model': OSError: We couldn't "
                      "connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached"),
    "unknown model (dpo)": ("dpo", ["--model_name_or_path", "nobody/no-model"],
                            "cannot load the processor of --model_name_or_path 'nobody/no-model'"),
    "unknown split": ("dpo", ["--dataset_train_split", "validation"], 'Unknown split "validation"'),
    "bad slice": ("sft", ["--dataset_test_split", "val[:abc]"], "cannot load --dataset_name"),
    "bf16 without a GPU": ("dpo", ["--use_cpu", "false"], "bf16"),
}


@pytest.mark.parametrize("case", list(CLI_ERRORS))
def test_bad_arguments_are_one_line_before_the_model_loads(case, guarded, tmp_path, capsys, monkeypatch):
    script, argv, message = CLI_ERRORS[case]
    monkeypatch.setenv("TINY_ENV_CPU", "0")  # the tiny environment would otherwise put a GPU-less run on the CPU itself
    code, out, err = run(guarded[script], base(tmp_path) + argv, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0] and message in lines[0], err
    assert "Traceback" not in out + err


def test_an_unknown_model_raised_a_bare_os_error_before(scripts):
    """Negative control of "unknown model": the processor load the scripts call raises OSError, which reached the
    command line as a traceback before recipes.load_processor turned it into the one line."""
    from helpers.processors import load_processor

    with pytest.raises(OSError, match="couldn't connect to 'https://huggingface.co'"):
        load_processor("nobody/no-model")


@pytest.mark.parametrize("folder", ["empty", "processor without weights"])
def test_a_model_that_cannot_be_loaded_is_one_line(folder, scripts, tmp_path, capsys):
    """The weights' own load fails as one line too: a folder holding no model, or a processor but no weights."""
    import shutil

    from recipes import load_model
    from tinyenv.hub import snapshot
    from trl import ModelConfig

    if folder != "empty":
        shutil.copytree(snapshot("Qwen/Qwen2-VL-7B-Instruct"), tmp_path, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.safetensors*"))
    with pytest.raises(SystemExit) as exit_:
        load_model(ModelConfig(model_name_or_path=str(tmp_path), dtype="float32"))
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert f": error: cannot load --model_name_or_path {str(tmp_path)!r}: " in err


@pytest.mark.parametrize("argv, message", [
    (["--dataset_name", "nobody/nothing"], "sft.py: error: cannot load --dataset_name 'nobody/nothing'"),
    (["--model_name_or_path", "nobody/no-model"], "sft.py: error: cannot load the processor of --model_name_or_path"),
])
def test_unknown_hub_ids_offline_are_one_line_on_the_real_command_line(argv, message, tmp_path):
    """`python scripts/sft.py ...` as a user runs it, without network (the environment's start-up code blocks it):
    exit status 2, one `error:` line, no traceback."""
    from tinyenv.hub import REPO_ROOT

    done = subprocess.run([sys.executable, "scripts/sft.py", *base(tmp_path), *argv], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert done.returncode == 2 and len(errors) == 1 and errors[0].startswith(message), done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr


def test_an_output_folder_that_cannot_be_made_is_one_line(guarded, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    code, _, err = run(guarded["sft"], ["--output_dir", str(tmp_path / "a-file" / "run"), "--use_cpu"], capsys)
    assert code == 2 and "--output_dir" in err and "is not writable" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def chartqa_dir(tmp_path_factory):
    """A local ChartQA-shaped data set: 7 train rows of which 3 unusable, 2 clean test rows, 2 test rows with 1 bad."""
    folder = tmp_path_factory.mktemp("chartqa")
    features = Features({"image": ImageFeature(), "query": Value("string"), "label": List(Value("string"))})
    image = {"bytes": png(), "path": None}

    def write(name, rows):
        Dataset.from_dict({"image": [r[0] for r in rows], "query": [r[1] for r in rows], "label": [r[2] for r in rows]},
                          features=features).to_parquet(folder / f"{name}.parquet")
    write("train", [(image, "Q0?", ["1"]), (None, "Q1?", ["1"]), (image, "Q2?", ["2"]), (image, " ", ["3"]),
                    (image, "Q4?", ["4"]), (image, "What <|image_pad|> is it?", ["5"]), (image, "Q6?", ["6"])])
    write("test", [(image, "T0?", ["1"]), (image, "T1?", ["2"])])
    write("validation", [(image, "V0?", ["1"]), (image, "V1?", [""])])
    return folder


def data_args(folder, test="test") -> list[str]:
    return ["--dataset_name", str(folder), "--dataset_train_split", "train", "--dataset_test_split", test]


def test_dropped_train_rows_past_the_threshold_stop_the_run_with_a_report(guarded, chartqa_dir, tmp_path, capsys):
    code, out, err = run(guarded["sft"], base(tmp_path) + data_args(chartqa_dir), capsys)
    assert code == 2
    assert "3 of 7 train rows (43%) are unusable, more than --max_dropped_fraction 0.05 allows" in err
    assert ("train: dropped 3 of 7 rows: row 1: missing image; row 3: empty query; row 5: query contains the model's "
            "control token '<|image_pad|>'") in out
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert [d["index"] for d in report["train"]["dropped"]] == [1, 3, 5] and report["test"]["dropped"] == []
    assert (report["train"]["rows"], report["train"]["kept"]) == (7, 4)


def test_a_threshold_the_user_raises_lets_the_run_go_on_still_reporting(guarded, chartqa_dir, tmp_path, capsys):
    """Negative control of the threshold: the same data passes with --max_dropped_fraction 0.5, and still says so."""
    code, out, _ = run(guarded["sft"], base(tmp_path) + data_args(chartqa_dir) + ["--max_dropped_fraction", "0.5"],
                       capsys)
    assert code == "model loaded" and "train: dropped 3 of 7 rows: row 1: missing image" in out
    assert "test: kept all 2 rows" in out


def test_any_dropped_test_row_is_an_error_by_default(guarded, chartqa_dir, tmp_path, capsys):
    argv = base(tmp_path) + data_args(chartqa_dir, test="validation") + ["--max_dropped_fraction", "0.5"]
    code, out, err = run(guarded["sft"], argv, capsys)
    assert code == 2 and "1 of 2 test rows (50%) are unusable, more than --max_dropped_test_fraction 0.0" in err
    assert "test: dropped 1 of 2 rows: row 1: empty label" in out


def test_grpo_reports_dropped_prompts_and_stops_like_the_others(guarded, chartqa_dir, tmp_path, capsys):
    argv = base(tmp_path) + ["--dataset_name", str(chartqa_dir), "--dataset_train_split", "train"]
    code, out, err = run(guarded["grpo"], argv, capsys)
    assert code == 2 and "3 of 7 train rows (43%) are unusable, more than --max_dropped_fraction 0.05 allows" in err
    assert "row 5: query contains the model's control token '<|image_pad|>'" in out
    code, out, _ = run(guarded["grpo"], argv + ["--max_dropped_fraction", "0.5"], capsys)
    assert code == "model loaded" and "train: dropped 3 of 7 rows" in out


def test_dpo_reports_identical_pairs_and_stops(guarded, tmp_path, capsys):
    folder = tmp_path / "pairs"
    folder.mkdir()
    Dataset.from_dict({"image": [{"bytes": png(), "path": None}] * 4, "question": ["Describe."] * 4,
                       "chosen": ["A ball.", "A cat.", "A cup.", "A dog."],
                       "rejected": ["A dog.", "A cat.", "A pen.", "A cat."]},
                      features=Features({"image": ImageFeature(), "question": Value("string"),
                                         "chosen": Value("string"), "rejected": Value("string")})
                      ).to_parquet(folder / "train.parquet")
    code, out, err = run(guarded["dpo"], base(tmp_path) + ["--dataset_name", str(folder), "--dataset_train_split",
                                                           "train"], capsys)
    assert code == 2 and "1 of 4 train rows (25%) are unusable" in err and "row 1: chosen == rejected" in out


def test_the_hub_token_never_reaches_the_run_folder(scripts, tmp_path, monkeypatch, capsys):
    """A real tiny SFT run with --hub_token and a checkpoint per step: no file under output_dir holds the token (the
    negative control, that training_args.bin would hold it, is in test_hygiene.py)."""
    token = "hf_" + "T" * 34
    monkeypatch.delenv("HF_TOKEN", raising=False)
    argv = base(tmp_path) + ["--hub_token", token, "--dataset_train_split", "train[:4]", "--dataset_test_split",
                             "val[:2]", "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1",
                             "--eval_strategy", "no", "--load_in_4bit", "False", "--bf16", "False", "--dtype",
                             "float32", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
                             "--max_pixels", "12544", "--logging_steps", "1"]
    code, out, err = run(scripts["sft"], argv, capsys)
    assert code == 0, err[-3000:]
    folder = tmp_path / "out"
    assert (folder / "checkpoint-2" / "training_args.bin").is_file() and (folder / "training_args.bin").is_file()
    assert token_leaks(folder) == []
    assert os.environ["HF_TOKEN"] == token  # handed to huggingface_hub through the environment instead
