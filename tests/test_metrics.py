"""ChartQA relaxed accuracy and AMBER yes/no metrics, on the shapes real labels take."""

from __future__ import annotations

import pytest

from helpers.metrics import normalize_yes_no, relaxed_accuracy, relaxed_correctness, yes_no_metrics


@pytest.mark.parametrize("prediction, target, expected", [
    ("1.216666667", "1.216666667", True),
    ("1.2", "1.216666667", True),          # 1.4% off
    ("1.15", "1.216666667", False),        # 5.5% off
    ("0.57", "0.57", True),
    ("0.6", "0.57", False),                # 5.3% off the gold
    ("0.54", "0.57", False),               # 0.03 / 0.57 = 5.3%
    ("No", "No", True),
    ("no", "No", True),
    ("Yes", "No", False),
    ("United States", "united states", True),
    ("United", "United States", False),
    ("-35", "-35", True),
    ("-34", "-35", True),
    ("35", "-35", False),                  # sign matters
    ("45%", "0.45", True),                 # trailing % is a fraction of 100
    ("45", "45%", False),                  # 45 vs 0.45
    ("0.45", "45%", True),
    ("100", "105", True),                  # 4.8% of the gold
    ("110", "105", True),                  # 4.8%
    ("111", "105", False),                 # 5.7%
    ("0", "0", True),
    ("0.01", "0", False),
    ("2019", "2019", True),
    ("2020", "2019", True),                # years are numbers to ChartQA's metric too (0.05% off)
    (" 42 ", "42", True),
    ("forty-two", "42", False),
])
def test_relaxed_correctness(prediction, target, expected):
    assert relaxed_correctness(prediction, target) is expected


def test_relative_change_is_measured_against_the_gold_not_the_prediction():
    # Cases where the widely copied evaluator (dividing by the prediction) gives the opposite verdict.
    assert relaxed_correctness("95", "100")        # 5/100 = 5.0% of the gold; 5/95 = 5.3% of the prediction
    assert not relaxed_correctness("105.2", "100")  # 5.2/100 = 5.2% of the gold; 5.2/105.2 = 4.9% of the prediction


def test_relaxed_accuracy_takes_the_best_of_several_labels():
    assert relaxed_accuracy(["7", "Yes", "blue"], [["seven", "7.2"], ["No"], ["Blue", "navy"]]) == pytest.approx(2 / 3)
    assert relaxed_accuracy(["a"], [["b", "A"]]) == 1.0
    with pytest.raises(ValueError):
        relaxed_accuracy(["1"], [["1"], ["2"]])


def test_relaxed_accuracy_takes_a_flat_string_as_one_label():
    # A formatted mirror stores each label as a string: read character by character, "4" would match "42"'s "4".
    assert relaxed_accuracy(["4", "42"], ["42", "42"]) == 0.5
    assert relaxed_accuracy(["4", "42"], ["42", ["42"]]) == relaxed_accuracy(["4", "42"], [["42"], ["42"]])
    for bad in ([], 42, [42], None):
        with pytest.raises(TypeError):
            relaxed_accuracy(["42"], [bad])


@pytest.mark.parametrize("answer, expected", [
    ("Yes", "yes"), ("yes.", "yes"), ("NO, there is no dog.", "no"), ("  No!", "no"),
    ("There is no dog", None), ("Nope", None), ("", None), ("Y", None),
])
def test_normalize_yes_no(answer, expected):
    assert normalize_yes_no(answer) == expected


def test_yes_no_metrics_treat_no_as_positive():
    truths = ["no", "no", "no", "yes", "yes", "yes"]
    preds = ["No.", "no", "Yes", "No", "yes", "I cannot tell"]
    m = yes_no_metrics(preds, truths)
    # answered no: 3 (two correct); gold no: 3; correct overall: No, no, yes = 3 of 6
    assert m == {"accuracy": pytest.approx(0.5), "precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3),
                 "f1": pytest.approx(2 / 3)}


def test_yes_no_metrics_edge_cases():
    assert yes_no_metrics(["yes", "yes"], ["yes", "no"]) == {"accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert yes_no_metrics(["No", "no"], ["no", "no"])["f1"] == 1.0
    with pytest.raises(ValueError):
        yes_no_metrics(["yes"], ["maybe"])


@pytest.mark.parametrize("score, golds", [(relaxed_accuracy, ["1", ["2"], "3"]), (yes_no_metrics, ["yes", "no", "no"])])
def test_a_missing_prediction_is_an_error_naming_its_position(score, golds):
    """A failed generation left as None: one TypeError naming the first position and the count, saying what to do."""
    with pytest.raises(TypeError, match=r'^prediction 1 is None, not a string \(2 of 3 are not\); score a failed '
                                        r'generation as ""$'):
        score(["1", None, None], golds)
    assert score(["1", "", ""], golds) == score(["1", "x", "x"], golds)  # what it says to do: scored as wrong


def test_a_missing_prediction_crashed_deep_inside_before():
    """Negative control: per item, None still fails where the text is first used, naming no position."""
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'strip'"):
        relaxed_correctness(None, "1")
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'lower'"):
        normalize_yes_no(None)


def test_a_missing_yes_no_truth_is_an_error_naming_its_position():
    with pytest.raises(TypeError, match=r"^truth 2 is None, not a string \(1 of 3 are not\)$"):
        yes_no_metrics(["yes", "no", "no"], ["yes", "no", None])
