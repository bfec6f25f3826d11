"""The α search of the calibration on a stand-in distortion d(α) = α (no model needed)."""

import pytest

from tada.evaluate import calibrate as cal


class _Variant:
    def __init__(self, name):
        self.name = name


@pytest.fixture
def linear_distortion(monkeypatch):
    """Replace the model evaluation by d(α) = |α| and record every (variant, direction, α) job."""
    jobs_seen = []

    def fake_evaluate(model, variants, jobs, *args, **kwargs):
        jobs_seen.extend(jobs)
        return [float(a) for _, _, a in jobs]

    monkeypatch.setattr(cal, "_evaluate", fake_evaluate)
    return jobs_seen


def _run(cutoffs, rounds=2):
    return cal.calibrate(None, [_Variant("caa"), _Variant("sae_localized")], None, None, None, cutoffs,
                         rows_for=None, start=1.0, factor=4.0, grid_points=3, rounds=rounds, steps=30,
                         batch_size=8)


def test_search_brackets_and_interpolates_the_cutoff(linear_distortion):
    out = _run({"pos": 0.5, "neg": 2.0})
    for name in ("caa", "sae_localized"):
        pos, neg = out[name]["pos"], out[name]["neg"]
        assert pos["reached"] and neg["reached"]
        # grid 0.25, 1, 4, then two log-linear refinements of d = α at the cutoff
        assert [a for a, _ in pos["trace"]][:1] == [0.25]
        assert pos["alpha_max"] == pytest.approx(0.5, rel=0.05)
        assert neg["alpha_max"] == pytest.approx(2.0, rel=0.05)
        assert all(d == a for a, d in pos["trace"])
    # 3 grid points + 2 refinements per (variant, direction)
    assert len(linear_distortion) == 2 * 2 * 5


def test_a_side_with_zero_cutoff_is_not_searched(linear_distortion):
    out = _run({"pos": 0.5, "neg": 0.0})
    for name in ("caa", "sae_localized"):
        neg = out[name]["neg"]
        assert neg["alpha_max"] is None and not neg["reached"] and neg["trace"] == []
        assert "cutoff 0" in neg["skipped"]
        assert out[name]["pos"]["alpha_max"] == pytest.approx(0.5, rel=0.05)
    assert {d for _, d, _ in linear_distortion} == {"pos"}


def test_no_side_to_search_evaluates_nothing(linear_distortion):
    out = _run({"pos": 0.0, "neg": 0.0})
    assert linear_distortion == []
    assert out["caa"]["pos"]["alpha_max"] is None and out["caa"]["neg"]["alpha_max"] is None


def test_a_combination_with_an_uncalibrated_side_names_it():
    from tada.evaluate.pipeline import combination_alpha_max

    cals = {"piano": {"variants": {"caa": {"pos": {"alpha_max": 2.0},
                                           "neg": {"alpha_max": None, "skipped": "cutoff 0: ..."}}}},
            "tempo": {"variants": {"caa": {"pos": {"alpha_max": 3.0}, "neg": {"alpha_max": 1.5}}}}}
    assert combination_alpha_max([("piano", 1), ("tempo", -1)], cals, "caa") == 1.5
    with pytest.raises(ValueError, match=r"piano \(neg\).*caa"):
        combination_alpha_max([("piano", -1), ("tempo", 1)], cals, "caa")
