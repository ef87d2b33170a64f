"""Run a scenario: size every candidate hardware for the same job and say which wins."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.planning.resolve import check_attention_kernel, check_grad_dtype, resolve
from planner.catalog.catalog import shipped_dir
from planner.catalog.yamlio import load_spec
from planner.catalog.catalog import load_model
from planner.errors import InfeasibleError, PlannerError, SpecError, UnknownNameError
from planner.estimators.params import count_params
from planner.results import Estimate
from planner.planning.sizing import Question, answer
from planner.specs.scenario import Scenario

_TRAINING = {"seq_len": "seq_len", "global_batch": "global_batch_size",
             "micro_batch": "micro_batch_size", "precision": "precision",
             "optimizer": "optimizer", "recompute": "recompute", "kernels": "kernels",
             "flash_attention": "flash_attention", "attention_flops": "attention_flops",
             "dropout": "dropout", "grad_dtype": "grad_dtype",
             "attention_kernel": "attention_kernel"}


# The flags a setting is given by on the command line, as resolve's errors name them, and
# the scenario key that gives it here: each training key is its flag (seq_len: --seq-len,
# flash_attention: --flash-attention / --no-flash-attention); data and finetune as listed.
_FLAG_KEYS = {**{f"--{pre}{key.replace('_', '-')}": ("training", key)
                 for key in _TRAINING for pre in ("no-", "")},
              "--epochs": ("data", "epochs"), "--samples": ("data", "samples"),
              "--tokens": ("data", "tokens"), "--packing": ("data", "packing"),
              "--avg-sample-tokens": ("data", "avg_sample_tokens"),
              "--trainable-layers": ("finetune", "trainable_layers"),
              "--finetune": ("finetune", "mode"),
              "--lora-rank": ("finetune", "lora_rank"),
              "--lora-dropout": ("finetune", "lora_dropout")}


def scenario_paths() -> dict[str, Path]:
    """Shipped scenario name -> path."""
    return {p.stem: p for p in sorted(shipped_dir("scenarios").glob("*.yaml"))}


def load_scenario(name_or_path: str) -> tuple[Scenario, Path]:
    """A scenario by shipped name or by path, with the file it came from."""
    p = Path(name_or_path).expanduser()
    if not p.is_file():
        shipped = scenario_paths()
        if name_or_path not in shipped:
            if p.suffix in (".yaml", ".yml") or "/" in name_or_path:
                raise SpecError(f"scenario file '{name_or_path}' does not exist")
            raise UnknownNameError("scenario", name_or_path, shipped)
        p = shipped[name_or_path]
    return load_spec(Scenario, p), p


@dataclass
class ScenarioResult:
    scenario: Scenario
    path: Path
    plans: list[Estimate]
    questions: list[str]
    backtest: Any = None  # planner.checks.backtest result, when available
    extra: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # candidates left out, and why

    def to_dict(self) -> dict[str, Any]:
        out = {"scenario": self.scenario.model_dump(mode="json", exclude_none=True),
               "plans": [p.to_dict() for p in self.plans], "questions": self.questions}
        if self.extra.get("serving") is not None:
            out["serving"] = self.extra["serving"].to_dict()
        return out


def _question(sc: Scenario, i: int) -> Question:
    c, cand = sc.constraints, sc.hardware[i]
    devices = cand.devices or c.devices
    if devices:
        return Question("devices", devices, max(c.max_devices, devices), c.objective)
    if c.deadline_days:
        return Question("deadline", c.deadline_days, c.max_devices, c.objective)
    if c.budget_usd:
        return Question("budget", c.budget_usd, c.max_devices, c.objective)
    raise SpecError("give constraints.devices, deadline_days or budget_usd (or "
                    f"hardware[{i}].devices)")


def _model(sc: Scenario, path: Path):
    if not isinstance(sc.model, str):
        return sc.model
    local = (path.parent / sc.model)
    return str(local) if local.is_file() else sc.model


def _tokens(sc: Scenario, model) -> float | None:
    d = sc.data
    if d.tokens is not None or d.samples is not None:
        return d.tokens
    spec = model if not isinstance(model, str) else load_model(model)
    ratio = 20.0 if d.chinchilla else d.tokens_per_param
    return ratio * count_params(spec).total


def run_scenario(sc: Scenario, path: Path, profiles_dirs: tuple[str, ...] = ()) -> ScenarioResult:
    """The best plan on each candidate, and a one-paragraph answer. A candidate that cannot
    answer the question (say, no plan fits the budget on it) is left out with a warning, as
    `planner compare` does; a bad model or file is an error naming the model key."""
    try:
        model = _model(sc, path)
        model = model if not isinstance(model, str) else load_model(model)
        tokens = _tokens(sc, model)
    except PlannerError as e:
        raise SpecError(f"{_where(path, ('model',))}: model: {e}") from None
    options = {_TRAINING[k]: v for k, v in sc.training.model_dump().items() if v is not None}
    options.update(sc.assumptions.model_dump(exclude_none=True))
    options.update(_finetune_options(sc, model, path))
    try:  # what no candidate changes is an error about the training keys alone
        check_grad_dtype(options, {})
        check_attention_kernel(options, None)
    except PlannerError as e:
        msg, keys = _in_scenario_keys(str(e))
        raise SpecError(f"{_where(path, *keys)}: {msg}") from None
    plans, questions, skipped = [], [], []
    for i, cand in enumerate(sc.hardware):
        opts = dict(options)
        if cand.price_tier:
            opts["price_tier"] = cand.price_tier
        if cand.price_usd_per_device_hour:
            opts["price_usd_per_device_hour"] = cand.price_usd_per_device_hour
        try:
            q = _question(sc, i)
            req = resolve(model, cand.hardware, tokens, cand.region, profiles_dirs, **opts)
            plans.append(answer(req, q, top=1).best)
        except InfeasibleError as e:
            skipped.append(f"hardware[{i}] ({cand.hardware}): {e}")
            continue
        except PlannerError as e:
            msg, keys = _in_scenario_keys(str(e))
            where = _where(path, *keys, ("hardware", i, "hardware"))
            raise SpecError(f"{where}: hardware[{i}] ({cand.hardware}): {msg}") from None
        questions.append(q.describe())
    if not plans:
        raise InfeasibleError(f"{path}: no hardware option can answer it; " + "; ".join(skipped))
    result = ScenarioResult(sc, path, plans, questions, warnings=skipped)
    if sc.serving is not None:
        from planner.planning.serve import serve_candidates

        try:
            served, skipped_serving = serve_candidates(
                model, sc.serving, sc.hardware, sc.assumptions.model_dump(exclude_none=True),
                profiles_dirs)
        except PlannerError as e:
            raise SpecError(f"{_where(path, ('serving',))}: serving: {e}") from None
        result.extra["serving"] = served
        result.warnings.extend(skipped_serving)
    return result


def _finetune_options(sc: Scenario, model, path: Path) -> dict[str, Any]:
    """The fine-tune and dataset options of `resolve` (as --finetune, --samples, --epochs give
    them); a target module the model lacks is an error naming the finetune key's line."""
    out = {k: v for k in ("samples", "epochs", "packing", "avg_sample_tokens")
           if (v := getattr(sc.data, k)) is not None}
    if sc.finetune is None:
        return out
    if sc.finetune.uses_lora:
        from planner.estimators.finetune import resolve_targets

        try:
            resolve_targets(model, sc.finetune.lora_targets)
        except PlannerError as e:
            msg = str(e).replace("--lora-targets:", "lora_targets:")
            raise SpecError(f"{_where(path, ('finetune', 'lora_targets'))}: finetune: "
                            f"{msg}") from None
    return {**out, "finetune": sc.finetune}


def _in_scenario_keys(msg: str) -> tuple[str, list[tuple[str, str]]]:
    """An error worded with command-line flags, reworded with this file's keys
    (--grad-dtype -> training.grad_dtype, --epochs -> data.epochs; the Python API's names
    dropped), and the key paths it names, in order."""
    found, original = [], msg
    for flag, key in _FLAG_KEYS.items():
        pattern = rf"(?<![\w-]){re.escape(flag)}(?![\w-])"
        if hit := re.search(pattern, original):
            found.append((hit.start(), key))
            said = ".".join(key) + (": false" if flag.startswith("--no-") else "")
            msg = re.sub(pattern, said, msg)
    keys = [key for _, key in sorted(found)]
    if keys:
        msg = re.sub(r" \([^()]* in the Python API\)", "", msg)
    return msg, keys


def _where(path: Path, *keys: tuple) -> str:
    """'file line N' for the first of the key paths that the scenario file holds, else for
    as much of the last one as it holds (just the file if none)."""
    from planner.catalog.yamlio import line_of, read_yaml

    try:
        tree = read_yaml(path, with_lines=True)[1]
    except PlannerError:
        return str(path)
    line = next((n for k in keys if (n := line_of(tree, k, whole=True))), None) or \
        (line_of(tree, keys[-1]) if keys else None)
    return f"{path} line {line}" if line else str(path)
