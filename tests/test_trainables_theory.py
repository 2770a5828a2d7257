"""The theory check: coarse pretraining leaves hard examples wrong, fine pretraining gets them right."""

from __future__ import annotations

import pytest

from trainables.theory import format_result, level_sweep, main, run_theory_check


def test_theory_check_holds_over_five_seeds():
    result = run_theory_check(seeds=5)
    # Coarse labels are fit perfectly, yet hard examples stay near chance.
    assert max(r["pretrain/loss"] for r in result.coarse) < 0.01
    assert result.failures() == [], format_result(result)


def test_the_command_reports_and_exits_zero(capsys):
    assert main(["--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "95% CI" in out


@pytest.mark.slow
def test_level_sweep_is_u_shaped():
    errors = {level: row["target_error"] for level, row in level_sweep(seeds=5).items()}
    best = min(errors, key=errors.get)
    assert best in ("class", "subclass"), errors  # finer than the target helps...
    assert errors["extra2"] > errors[best] + 0.03, errors  # ...until labels lose their features
    assert errors["superclass"] > errors[best] + 0.1, errors
