"""The boundary checks of asqhw.core.validate: one exception type, messages that name the value."""

from __future__ import annotations

import pytest

from asqhw.core.errors import UserError
from asqhw.core.validate import check_bool, check_choice, check_int, is_int


def test_a_user_error_is_a_value_error():
    assert issubclass(UserError, ValueError)


@pytest.mark.parametrize("value", [0, 7, -3, 2**70])
def test_integers_are_integers(value):
    assert is_int(value)


@pytest.mark.parametrize("value", [True, False, 2.0, "3", None])
def test_bools_floats_and_strings_are_not(value):
    assert not is_int(value)


def test_check_int_returns_the_value_inside_the_range():
    assert check_int("lanes", 8, 1, 256) == 8
    assert check_int("lanes", 1, 1, 1) == 1
    assert check_int("seed", -5) == -5


@pytest.mark.parametrize("value, lo, hi, message", [
    (2.5, 1, 256, "lanes must be an integer, not 2.5"),
    (True, 1, 256, "lanes must be an integer, not True"),
    ("8", 1, 256, "lanes must be an integer, not '8'"),
    (300, 1, 256, "lanes must be in 1..256, not 300"),
    (0, 1, 256, "lanes must be in 1..256, not 0"),
    (0, 1, None, "lanes must be a positive integer, not 0"),
    (1, 2, None, "lanes must be at least 2, not 1"),
    (9, None, 8, "lanes must be at most 8, not 9"),
])
def test_check_int_names_the_value_and_what_was_expected(value, lo, hi, message):
    with pytest.raises(UserError) as e:
        check_int("lanes", value, lo, hi)
    assert str(e.value) == message


def test_check_bool_takes_only_true_or_false():
    assert check_bool("out_signed", False) is False
    with pytest.raises(UserError, match="out_signed must be true or false, not 1"):
        check_bool("out_signed", 1)


def test_check_choice_lists_the_choices():
    assert check_choice("schedule", "any", ("any", "grouped")) == "any"
    with pytest.raises(UserError, match="schedule must be one of any, grouped, not 'all'"):
        check_choice("schedule", "all", ("any", "grouped"))
