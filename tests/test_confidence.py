"""Planning at a confidence level (issue 13): --confidence high meets a deadline or budget in
the worst case of the plan's own range, and every deadline/budget answer says in which cases
the constraint holds."""

import json

import pytest

from planner.cli import cli

JOB = ["plan", "--model", "llama3-70b", "--hardware", "h100-sxm", "--tokens", "15T",
       "--global-batch", "2048", "--format", "json"]


def _plan(runner, *args):
    result = runner.invoke(cli, [*JOB, *args])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def deadline(runner_module):
    return (_plan(runner_module, "--deadline-days", "45"),
            _plan(runner_module, "--deadline-days", "45", "--confidence", "high"))


@pytest.fixture(scope="module")
def runner_module():
    from click.testing import CliRunner
    return CliRunner()


def test_expected_plan_says_where_the_deadline_fails(deadline):
    exp, _ = deadline
    con = exp["constraint"]
    r = exp["best"]["range"]
    assert con["values"] == {k: r[k]["wall_clock_days"] for k in ("low", "expected", "high")}
    assert con["met"]["expected"] and r["expected"]["wall_clock_days"] <= 45
    # the case: the expected answer misses the deadline in its own worst case
    assert not con["met"]["high"] and r["high"]["wall_clock_days"] > 45


def test_high_confidence_meets_the_deadline_in_the_worst_case(deadline):
    exp, high = deadline
    assert high["confidence"] == "high" and all(high["constraint"]["met"].values())
    assert high["best"]["range"]["high"]["wall_clock_days"] <= 45
    assert high["best"]["layout"]["devices"] > exp["best"]["layout"]["devices"]
    assert "in the worst case" in high["question"]


def test_high_confidence_budget(runner_module):
    exp = _plan(runner_module, "--budget-usd", "60M")
    high = _plan(runner_module, "--budget-usd", "60M", "--confidence", "high")
    assert exp["best"]["range"]["expected"]["cost_usd"] <= 60e6 < exp["best"]["range"]["high"]["cost_usd"]
    assert high["best"]["range"]["high"]["cost_usd"] <= 60e6
    # the worst-case plan is slower than the expected-case plan
    assert high["best"]["range"]["expected"]["wall_clock_days"] >= \
        exp["best"]["range"]["expected"]["wall_clock_days"]


def test_table_output_names_the_cases(runner_module):
    result = runner_module.invoke(cli, [*JOB[:-2], "--deadline-days", "45"])
    line = result.stdout.splitlines()[1]
    assert line.startswith("Deadline 45 days: met in the best (")
    assert "not in the worst (" in line and "--confidence high" in line


def test_confidence_needs_a_constraint(runner_module):
    result = runner_module.invoke(cli, [*JOB[:-2], "--devices", "64", "--confidence", "high"])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(
        "--confidence high needs --deadline-days or --budget-usd")


def test_plot_draws_the_deadline_and_budget():
    pytest.importorskip("matplotlib")
    import planner
    from planner.report.plot import compare_figure, pyplot

    est = planner.estimate(model="llama3-8b", hardware="h100-sxm", devices=64, tokens="1T")
    fig = compare_figure([est], "t", deadline_days=30, budget_usd=3e5)
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata()))
             for ln in fig.axes[0].lines}
    assert lines["deadline: 30 days"][0] == [30, 30]
    assert next(v for k, v in lines.items() if k.startswith("budget:"))[1] == [0.3, 0.3]
    pyplot().close(fig)
