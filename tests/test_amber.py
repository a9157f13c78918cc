"""AMBER loader, yes/no prompts, and the tiny run folders notebooks hand to each other."""

from __future__ import annotations

from helpers.amber import YES_NO_INSTRUCTION, load_amber, yes_no_prompt
from helpers.tiny import tiny_run_dir


def test_sample_joins_queries_with_truths():
    amber = load_amber()
    assert len(amber) == 60 and set(amber["truth"]) == {"yes", "no"}
    assert amber[0]["id"] == 1005 and amber[0]["image"].size[0] > 0
    assert all(t.startswith("discriminative") for t in amber["type"])
    assert len(load_amber(limit=5)) == 5


def test_yes_no_prompt_is_one_image_user_turn():
    (turn,) = yes_no_prompt("Is there a cat in this image?")
    assert turn["role"] == "user" and turn["content"][0] == {"type": "image"}
    assert turn["content"][1]["text"] == f"Is there a cat in this image? {YES_NO_INSTRUCTION}"


def test_tiny_run_dir_is_emptied(tmp_path, monkeypatch):
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path))
    first = tiny_run_dir("x")
    (tmp_path / "runs" / "x" / "stale").write_text("old checkpoint")
    assert tiny_run_dir("x") == first and not any((tmp_path / "runs" / "x").iterdir())
