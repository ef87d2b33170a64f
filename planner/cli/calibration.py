"""`planner calibration list|add|link|clear`: the stored corrections of the performance model.

`planner validate --calibrate` stores one from a timed single-device run; `calibration add`
derives one from a run `planner measure` recorded, given the run's training configuration;
`calibration link` stores a link's achieved bandwidth from an nccl-tests output.
"""

from __future__ import annotations

from pathlib import Path

import click

from planner.cli.common import layout_options, model_options, split_cli_options, training_options
from planner.cli.measure import ledger_option
from planner.cli.options import COUNT, format_option, profiles_option
from planner.vocab import LINK_LEVELS


@click.group("calibration")
def calibration_group() -> None:
    """Corrections of the performance model: from `planner validate --calibrate`, `planner
    calibration add` for a run `planner measure` recorded, or `planner calibration link` for
    a link's bandwidth measured by nccl-tests."""


@calibration_group.command("list")
@click.option("--calibration", "path", type=click.Path(dir_okay=False))
@format_option
def calibration_list(path, fmt) -> None:
    """List stored calibrations."""
    from dataclasses import asdict

    from planner.catalog import calibrations as calibration
    from planner.report.tabular import render_rows

    where = Path(path).expanduser() if path else None
    rows = [{"kind": "compute", **asdict(c), "scale": c.scale} for c in calibration.load(where)]
    links = calibration.load_links(where)
    shown = rows + [{"kind": "link", "hardware": c.hardware, "shape": c.level,
                     "scale": c.efficiency, "date": c.date, "source": c.describe()}
                    for c in links]
    cols = ["kind", "hardware", "precision", "shape", "params", "measured_hfu",
            "predicted_mfu", "scale", "date", "source"]
    click.echo(render_rows(shown, cols, fmt, json_rows=rows + [asdict(c) for c in links]),
               nl=False)


@calibration_group.command("add")
@click.argument("run_id")
@model_options
@click.option("--hardware", "-H", help="Hardware profile (default: the run's --hardware).")
@profiles_option
@click.option("--devices", "-n", type=click.IntRange(min=1),
              help="Devices the run trained on (default: the run's billed devices).")
@training_options
@layout_options
@click.option("--steps", type=COUNT,
              help="Optimizer steps the run took (with --global-batch and --seq-len; default: "
                   "what `planner measure` recorded).")
@click.option("--exclude-seconds", type=click.FloatRange(min=0), default=0.0,
              show_default=True, help="Seconds of the run that were not training steps "
              "(start-up, data loading, checkpoints), taken off its duration.")
@ledger_option
@click.option("--calibration", "path", type=click.Path(dir_okay=False),
              help="Calibration file (default: $PLANNER_CALIBRATION, else "
                   "~/.config/planner/calibration.json).")
def calibration_add(run_id, hardware, profiles_dirs, devices, steps, exclude_seconds, ledger,
                    path, **opts) -> None:
    """Derive a calibration from run RUN_ID of the ledger: the compute speed at which the
    model's step time for the run's own layout (every degree given: --tp, --pp, --cp,
    --zero, --micro-batch, --recompute, --virtual-stages) equals the measured one, with
    communication and the bubble kept as the model has them. Flags not given are taken from
    what `planner measure` recorded with the run (its --model, --steps, --seq-len, --tp, ...).
    Later estimates on that hardware, for models within 10x of its size, use it and say so."""
    from planner.catalog import calibrations as calibration
    from planner.measurement.ledger import Ledger, ledger_path
    from planner.planning.calibrate import calibrate_from_run, calibration_entry, measured_run
    from planner.planning.resolve import resolve

    record = Ledger(ledger_path(ledger)).get(run_id)
    recorded = _recorded_training(record)
    used = [k for k in recorded if k not in ("steps", "tokens") and k in opts
            and opts[k] is None]
    opts.update({k: recorded[k] for k in used})
    steps, from_record = _steps(steps, opts, recorded)
    used += from_record
    missing = [flag for flag, key in (("--model", "model"), ("--seq-len", "seq_len"),
                                      ("--global-batch", "global_batch")) if opts.get(key) is None]
    if steps is None:
        missing.append("--steps")
    if missing:  # a calibration from defaults nobody ran would correct every later estimate
        raise click.UsageError(f"give the run's {', '.join(missing)} (or record them with "
                               "`planner measure`): a calibration is made from what the run "
                               "trained, not from defaults")
    if steps < 1 or steps != int(steps):
        hint = "--steps" if "steps" not in from_record else "--steps (the run's recorded one)"
        raise click.BadParameter(f"{steps:g} is not a whole number of steps (>= 1)",
                                 param_hint=hint)
    run = measured_run(record, hardware, devices, exclude_seconds)
    model = opts.pop("model")
    shape, options = split_cli_options(opts)
    options.pop("tokens", None)  # the run's steps, not a token budget, matter here
    req = resolve(model, run.hardware, None, None, profiles_dirs, shape, use_calibration=False,
                  devices=run.devices, **options)
    where = Path(path).expanduser() if path else None
    rc = calibrate_from_run(req, run.devices, run.seconds / steps, where)
    entry = calibration_entry(req, run, int(steps), rc, where)
    saved = calibration.save(entry, where)
    if used:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(used))
        click.echo(f"from the run's record: {flags}", err=True)
    click.echo(f"calibration saved to {saved}: compute x{rc.compute_scale:.3f} (measured "
               f"{rc.measured_step_s:.4g} s per step, the model {rc.predicted_step_s:.4g} s); "
               f"{entry.describe()}", err=True)
    if not rc.plausible:
        click.echo(f"warning: compute x{rc.compute_scale:.3g} is far from what kernels run at "
                   "(below 0.3, or GEMMs past the peak); check --steps, --exclude-seconds, "
                   "--devices and the layout (`planner calibration clear` removes it)", err=True)
    if not exclude_seconds:
        click.echo("note: the run's whole duration counted as training steps; its start-up "
                   "makes the calibration pessimistic (--exclude-seconds)", err=True)


def _recorded_training(record: dict) -> dict:
    """The training flags `planner measure` recorded with the run, checked as this command
    would check them given, with the JSON type each must have (SpecError naming the run and
    the flag otherwise: a hand-edited or foreign record is never coerced)."""
    from planner.cli.common import LAYOUT_KEYS, RUN_TRAINING_KEYS
    from planner.errors import SpecError

    rec, rid = record.get("training"), record.get("id")
    if rec is None:
        return {}
    if not isinstance(rec, dict):
        raise SpecError(f"run {rid}'s recorded training flags are not a mapping")
    ctx = click.get_current_context()
    params = {p.name: p for p in ctx.command.params}
    allowed = {"model", "steps", "tokens", *RUN_TRAINING_KEYS, *LAYOUT_KEYS}
    out = {}
    for key, value in rec.items():
        flag = f"--{key.replace('_', '-')}"
        if key not in allowed or key not in params:
            raise SpecError(f"run {rid}'s record has an unknown training flag {key!r}")
        if value is None:
            continue
        param = params[key]
        want = (bool if param.is_flag else str if isinstance(param.type, click.Choice) or
                key == "model" else float if key in ("steps", "tokens") else int)
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool)) \
            or (want is float and isinstance(value, int) and not isinstance(value, bool))
        try:
            if not ok:
                raise TypeError
            out[key] = param.type.convert(value, param, ctx)
        except (click.BadParameter, TypeError, ValueError) as e:
            why = e.message if isinstance(e, click.BadParameter) else \
                f"expected {'a number' if want is float else 'a ' + want.__name__}"
            raise SpecError(f"run {rid}'s recorded {flag} {value!r}: {why}") from None
    return out


def _steps(given: float | None, opts: dict, recorded: dict) -> tuple[float | None, list[str]]:
    """(optimizer steps, the recorded flags they came from): --steps, else --tokens over
    --seq-len x --global-batch as given, else the record's steps, else its tokens."""
    from planner.errors import SpecError

    def from_tokens(tokens: float, where: str) -> float:
        seq, batch = opts.get("seq_len"), opts.get("global_batch")
        if not (seq and batch):
            raise SpecError(f"{where} {tokens:g} needs --seq-len and --global-batch to give "
                            "steps; give --steps")
        steps = tokens / (seq * batch)
        if steps != int(steps) or steps < 1:
            raise SpecError(f"{where} {tokens:g} over --seq-len {seq} x --global-batch {batch} "
                            f"is {steps:g} steps, not a whole number; give --steps")
        return steps

    if given is not None:
        return given, []
    if opts.get("tokens") is not None:
        return from_tokens(opts["tokens"], "--tokens"), []
    if recorded.get("steps") is not None:
        return recorded["steps"], ["steps"]
    if recorded.get("tokens") is not None:
        return from_tokens(recorded["tokens"], "the run's recorded --tokens"), ["tokens"]
    return None, []


@calibration_group.command("link")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--hardware", "-H", required=True, help="Hardware profile the test ran on.")
@profiles_option
@click.option("--level", type=click.Choice(LINK_LEVELS),
              help="The link the test measured (default: scale_up on one node, scale_out "
                   "across nodes). Where one scale-up domain spans nodes (NVL72) the hosts do "
                   "not say it: scale_up says the run stayed inside one domain.")
@click.option("--calibration", "path", type=click.Path(dir_okay=False),
              help="Calibration file (default: $PLANNER_CALIBRATION, else "
                   "~/.config/planner/calibration.json).")
def calibration_link(results, hardware, profiles_dirs, level, path) -> None:
    """Store a link's achieved bandwidth from RESULTS, the output of nccl-tests'
    all_reduce_perf (or reduce_scatter_perf, all_gather_perf) run on the cluster, e.g.
    `mpirun -np 16 -npernode 8 all_reduce_perf -b 8 -e 8G -f 2 -g 1 > results.txt`. The
    largest bus bandwidth it reached, as a fraction of the profile's link rate (scale-up on one
    node, the nodes' NICs across nodes), replaces the model's default for that level in later
    estimates on that hardware, which say so."""
    from planner.catalog.catalog import load_hardware
    from planner.measurement.nccl_tests import read_nccl_tests
    from planner.planning.link_calibration import plateau

    hw = load_hardware(hardware, profiles_dirs)
    res = read_nccl_tests(Path(results))
    source = f"nccl-tests, {Path(results).name}"
    size, busbw = plateau(res.rows, source)
    check_device(hw, res.device_name, Path(results).name)
    save_link(hw, res.collective, res.ranks_per_host, size, busbw, source, res.device_name,
              level, Path(path).expanduser() if path else None)


def check_device(hw, device_name: str, what: str) -> None:
    """BadParameter (--hardware) when a shipped profile is not the GPUs that ran: every name
    the run's ranks report maps to another profile (a profile of your own is not checked)."""
    from planner.catalog.catalog import shipped_dir
    from planner.profiling.validate import profile_for_gpu

    named = {profile_for_gpu(d) for d in device_name.split(" / ")}
    own = not (shipped_dir("hardware_profiles") / f"{hw.name}.yaml").is_file()
    if None in named or hw.name in named or own:
        return
    raise click.BadParameter(f"{hw.name!r}: {what} ran on {device_name}, which is "
                             f"{' / '.join(sorted(named))}", param_hint="--hardware")


def save_link(hw, collective, per_host, size, busbw, source, device_name, level,
              path: Path | None) -> None:
    """Fit, store and report a link calibration (the command's and validate's)."""
    from planner.catalog import calibrations as calibration
    from planner.estimators.step_time import DEFAULT_PERF
    from planner.planning.link_calibration import link_calibration
    from planner.planning.applied_calibration import with_links

    perf, _ = with_links(DEFAULT_PERF, hw, path)
    entry, warnings = link_calibration(hw, collective, per_host, size, busbw, source,
                                       device_name, level, perf)
    old = calibration.lookup_links(hw.name, path).get(entry.level)
    saved = calibration.save(entry, path)
    click.echo(f"link calibration saved to {saved}: {entry.describe()}", err=True)
    if old is not None:
        click.echo(f"note: it replaces {old.describe()}", err=True)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    # the other level may no longer fit with this one (a scale-up figure caps scale-out groups)
    for note in with_links(DEFAULT_PERF, hw, saved)[1]:
        if note.value == "not applied":
            click.echo(f"warning: {note.name} is not applied now: {note.source}", err=True)
    if not _read_by_estimates(saved):
        click.echo(f"note: estimates read {calibration.default_path()}; set "
                   f"{calibration.ENV}={saved} for them to use this file", err=True)


def _read_by_estimates(path: Path) -> bool:
    from planner.catalog import calibrations as calibration

    try:
        return path.resolve() == calibration.default_path().resolve()
    except OSError:
        return False


@calibration_group.command("clear")
@click.option("--calibration", "path", type=click.Path(dir_okay=False))
@click.option("--hardware", "-H", help="Only this hardware's calibrations.")
def calibration_clear(path, hardware) -> None:
    """Remove stored calibrations."""
    from planner.catalog import calibrations as calibration

    n = calibration.clear(Path(path).expanduser() if path else None, hardware)
    click.echo(f"removed {n} calibration{'s' if n != 1 else ''}", err=True)

