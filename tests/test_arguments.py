"""The shared argument checks: each bad value is a ValueError naming the argument."""

import warnings

import numpy as np
import pytest

from gnnbench.arguments import check_choice, check_float, check_int, renamed


@pytest.mark.parametrize("value", [1.5, "3", None, True, float("nan")])
def test_check_int_rejects_non_integers_by_name(value):
    with pytest.raises(ValueError, match=r"^num_things must be an integer"):
        check_int("num_things", value, minimum=1)


def test_check_int_bounds_and_numpy_integers():
    assert check_int("n", np.int64(7), minimum=1) == 7
    assert type(check_int("n", np.int32(3))) is int
    with pytest.raises(ValueError, match=r"n must be an integer >= 1, got 0"):
        check_int("n", 0, minimum=1)
    with pytest.raises(ValueError, match=r"n must be an integer >= 1 and <= 4, got 5"):
        check_int("n", 5, minimum=1, maximum=4)


def test_check_float_bounds_open_and_closed():
    assert check_float("p", 0.0, minimum=0.0, maximum=1.0) == 0.0
    assert check_float("p", np.float32(0.25), minimum=0.0) == 0.25
    with pytest.raises(ValueError, match=r"sigma must be a finite number > 0.0, got 0.0"):
        check_float("sigma", 0, minimum=0.0, open_min=True)
    with pytest.raises(ValueError, match=r"negative_ratio must be a finite number >= 0.0, got -1.0"):
        check_float("negative_ratio", -1, minimum=0.0)
    with pytest.raises(ValueError, match=r"ratio must be a finite number"):
        check_float("ratio", float("inf"))
    with pytest.raises(ValueError, match=r"ratio must be a number, got '1'"):
        check_float("ratio", "1")


def test_check_choice_lists_the_choices():
    assert check_choice("rule", "gcn", ("gcn", "mean")) == "gcn"
    with pytest.raises(ValueError, match=r"rule must be one of 'gcn', 'mean'; got 'sum'"):
        check_choice("rule", "sum", ("gcn", "mean"))


def test_renamed_warns_once_per_use_and_refuses_both():
    assert renamed("num_probes", "num_matvecs", None, 100, default=100) == 100
    with pytest.warns(DeprecationWarning, match="'num_probes' is deprecated.*'num_matvecs'"):
        assert renamed("num_probes", "num_matvecs", 30, 100, default=100) == 30
    with pytest.raises(ValueError, match="give only 'num_matvecs'"):
        renamed("num_probes", "num_matvecs", 30, 50, default=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        renamed("num_probes", "num_matvecs", None, 50, default=100)
