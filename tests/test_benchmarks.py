"""The benchmarks run end to end at tiny size on CPU (--tiny) and write the results files the README and notebooks read."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tinyenv.hub import REPO_ROOT


def bench(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, f"benchmarks/{script}.py", "--tiny", *args], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.parametrize("method, recipe", [("sft", "24gb"), ("dpo", "a100-80gb")])
def test_train_throughput_tiny(method, recipe, tmp_path):
    bench("train_throughput", "--method", method, "--only", recipe, "--steps", "2", "--warmup", "0",
          "--out", str(tmp_path))
    report = json.loads((tmp_path / f"throughput-{method}-cpu-tiny.json").read_text())
    assert report["tiny"] and report["versions"]["trl"] and report["device"].startswith("cpu")
    assert [r["name"] for r in report["recipes"]] == ["seed", recipe]  # the seed always runs: speed-ups need it
    seed, other = report["recipes"]
    assert report["speedup_vs_seed_recipe"] == pytest.approx({"seed": 1.0, recipe: other["tokens_per_s"] /
                                                              seed["tokens_per_s"]})
    for r in report["recipes"]:
        assert r["tokens_per_s"] * r["step_s"] == pytest.approx(r["tokens_per_step"])
        assert r["samples_per_s"] * r["step_s"] == pytest.approx(r["batch"])
        assert r["rows_per_step"] == r["batch"] * (2 if method == "dpo" else 1)  # DPO: chosen and rejected rows
        assert r["tokens_per_step"] <= r["rows_per_step"] * r["padded_length"]
        assert r["model_flops_per_step"] > 0 and r["mfu"] is None  # no peak FLOP/s for a CPU
    assert isinstance(report["goals"], str)  # a tiny CPU run judges no goal


def test_eval_throughput_tiny(tmp_path):
    bench("eval_throughput", "--prompts", "4", "--batch-sizes", "1", "4", "--new-tokens", "4", "--out", str(tmp_path))
    report = json.loads((tmp_path / "eval-cpu-tiny.json").read_text())
    assert [r["batch_size"] for r in report["results"]] == [1, 4]
    assert report["speedup_vs_one_by_one"]["1"] == 1.0
    for r in report["results"]:
        assert 4 <= r["new_tokens"] <= 16 and r["prompts_per_s"] * r["seconds"] == pytest.approx(4)


def test_data_prep_tiny(tmp_path):
    """Notebook 01's measurement, on 8 rows a set: every step timed for 1 and 2 processes, the same rows either way
    (the script asserts it), the formatter keeping the stored image bytes and a plain map rewriting them."""
    out = bench("data_prep", "--rows", "8", "--procs", "2", "--out", str(tmp_path))
    report = json.loads((tmp_path / "data-prep-cpu-tiny.json").read_text())
    assert report["tiny"] and report["procs"] == [1, 2] and report["versions"]["datasets"]
    for kind in ("chartqa", "rlaif_v"):
        r = report["seconds_per_1000_rows"][kind]
        assert r["rows"] == 8 and r["bad_rows"] == 0 and r["plain_map_rewrites"] == 8
        assert all(r[step][p] > 0 for step in ("validate", "format", "plain_map") for p in ("1", "2"))
        assert 0 < r["sizes_header"] and 0 < r["sizes_decode"]
        assert f"{kind} (8 rows" in out
