"""ChartQA relaxed accuracy and AMBER-style yes/no hallucination metrics."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _to_float(text: str) -> float | None:
    """Parse a number as ChartQA does: a trailing '%' divides by 100; anything else non-numeric gives None."""
    text = text.strip()
    try:
        if text.endswith("%"):
            return float(text[:-1].strip()) / 100.0
        return float(text) if _NUMBER.fullmatch(text) else None
    except ValueError:
        return None


def relaxed_correctness(prediction: str, target: str, max_relative_change: float = 0.05) -> bool:
    """ChartQA / Pix2Struct: within 5% of the gold number (relative to the gold), else case-insensitive exact match."""
    pred, gold = _to_float(prediction), _to_float(target)
    if pred is not None and gold is not None:
        if gold == 0:
            return pred == 0
        return abs(pred - gold) / abs(gold) <= max_relative_change
    return prediction.strip().lower() == target.strip().lower()


def relaxed_accuracy(predictions: list[str], labels: list[list[str] | str]) -> float:
    """Mean relaxed correctness over questions; with several gold labels the best one counts.

    Each label is a list of gold strings (the hub's ChartQA) or one string (formatted mirrors store it so); a bare
    string is one label, never iterated character by character. Any other shape, or a prediction that is not a string
    (None from a failed generation), raises TypeError naming its position: score a failed generation as ""."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} label lists")
    if not predictions:
        raise ValueError("no predictions")
    odd = [i for i, p in enumerate(predictions) if not isinstance(p, str)]
    if odd:
        raise TypeError(f"prediction {odd[0]} is {predictions[odd[0]]!r}, not a string ({len(odd)} of "
                        f'{len(predictions)} are not); score a failed generation as ""')
    golds = [_gold_list(g) for g in labels]
    hits = [any(relaxed_correctness(p, g) for g in gold) for p, gold in zip(predictions, golds)]
    return sum(hits) / len(hits)


def _gold_list(label: object) -> list[str]:
    """One question's gold answers as a list: a string is one answer; a list or tuple must hold strings."""
    if isinstance(label, str):
        return [label]
    if isinstance(label, (list, tuple)) and label and all(isinstance(g, str) for g in label):
        return list(label)
    raise TypeError(f"a label must be a string or a non-empty list of strings, got {label!r}")


def normalize_yes_no(answer: str) -> str | None:
    """'Yes.', 'NO, there is not' -> 'yes' / 'no' from the first word; anything else -> None."""
    words = re.findall(r"[a-z]+", answer.lower())
    return words[0] if words and words[0] in ("yes", "no") else None


def yes_no_metrics(predictions: list[str], truths: list[str]) -> dict[str, float]:
    """AMBER discriminative metrics with 'no' as the positive class; a non-yes/no answer is wrong and not 'no'.

    A prediction or truth that is not a string (None from a failed generation) raises TypeError naming its position."""
    if len(predictions) != len(truths) or not truths:
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} truths")
    for name, values, hint in (("prediction", predictions, '; score a failed generation as ""'), ("truth", truths, "")):
        odd = [i for i, v in enumerate(values) if not isinstance(v, str)]
        if odd:
            raise TypeError(f"{name} {odd[0]} is {values[odd[0]]!r}, not a string ({len(odd)} of {len(values)} are "
                            f"not){hint}")
    preds = [normalize_yes_no(p) for p in predictions]
    gold = [t.strip().lower() for t in truths]
    if set(gold) - {"yes", "no"}:
        raise ValueError(f"truths must be yes/no, got {sorted(set(gold) - {'yes', 'no'})}")
    tp = sum(p == "no" and g == "no" for p, g in zip(preds, gold))
    answered_no, gold_no = preds.count("no"), gold.count("no")
    precision = tp / answered_no if answered_no else 0.0
    recall = tp / gold_no if gold_no else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = sum(p == g for p, g in zip(preds, gold)) / len(gold)
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}
