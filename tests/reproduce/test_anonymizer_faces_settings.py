"""The bars a faces run is held to: the goal from chance and the originals, the paper's Table 1."""

from __future__ import annotations

import pytest

from imgprivacy.reproduce.anonymizer_faces_settings import (
    PAPER_TABLE1,
    FacesSettings,
    bars_met,
    goal_for,
)

KEY = ("identity_accuracy", "expression_accuracy")


def row(target: int, identity: float, expression: float) -> dict:
    return {"target_identity": target, KEY[0]: identity, KEY[1]: expression}


def test_goal_is_chance_plus_ten_points_and_85_percent_of_the_originals():
    goal = goal_for(0.9, 1 / 6)
    assert goal.identity_accuracy_at_most == pytest.approx(1 / 6 + 0.10)
    assert goal.expression_accuracy_at_least == pytest.approx(0.765)


def test_paper_bar_is_the_same_targets_table1_entry():
    goal = goal_for(1.0, 1 / 6)
    methods = {
        "a": [row(0, 0.42, 0.73), row(4, 0.33, 0.70)],  # 0 meets its bar; 4's identity 33 > 32.8
        "b": [row(2, 0.20, 0.90), row(1, 0.10, 0.99)],  # no paper entry for target 1
    }
    goal_met_by, paper_met_by = bars_met(methods, goal=goal, key=KEY, paper=True)
    assert paper_met_by == {"a": [0], "b": [2]}
    assert goal_met_by == {"a": [], "b": [2, 1]}
    assert PAPER_TABLE1[4]["identity_accuracy"] < 0.33


def test_no_paper_bar_on_other_data():
    goal = goal_for(1.0, 0.5)
    goal_met_by, paper_met_by = bars_met(
        {"a": [row(0, 0.55, 0.9)]}, goal=goal, key=KEY, paper=False
    )
    assert paper_met_by == {"a": []} and goal_met_by == {"a": [0]}


def test_code_match_whitens_per_identity_in_every_preset():
    for settings in (FacesSettings(), FacesSettings.quick(), FacesSettings.full(seed=3)):
        assert settings.code_match.whiten is True
    assert FacesSettings.full(seed=3).code_match.seed == 3
