"""gcnet.solver: the "poly" learning-rate multiplier of the Cityscapes recipes."""

import pytest

from gcnet.solver import PolyParamScheduler


def test_poly_multiplier():
    paper, mmseg = PolyParamScheduler(), PolyParamScheduler(power=0.9, end_value=0.01)
    assert paper(0.0) == mmseg(0.0) == 1.0 and paper(1.0) == 0.0 and mmseg(1.0) == pytest.approx(0.01)
    assert paper(0.5) == pytest.approx(0.5**0.9) and mmseg(0.5) == pytest.approx(0.99 * 0.5**0.9 + 0.01)


@pytest.mark.parametrize("kwargs", [dict(power=0), dict(end_value=1.0), dict(end_value=-0.1)])
def test_bad_values(kwargs):
    with pytest.raises(ValueError, match="power must be > 0 and end_value in \\[0, 1\\)"):
        PolyParamScheduler(**kwargs)
