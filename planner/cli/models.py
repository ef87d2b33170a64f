"""`planner models list|show`."""

from __future__ import annotations


import click

from planner.catalog.catalog import load_model, preset_paths
from planner.cli.options import format_option
from planner.estimators.params import count_params
from planner.report import render_rows
from planner.report.tabular import dumps_json


def _row(spec) -> dict:
    p = count_params(spec)
    return {
        "name": spec.name, "params_total": p.total, "params_active": p.active,
        "layers": spec.num_layers, "d_model": spec.d_model, "heads": spec.num_heads,
        "kv_heads": spec.kv_heads, "attention": spec.attention_kind,
        "experts": f"{spec.moe.experts_per_token}/{spec.moe.num_experts}" if spec.moe else "",
        "vocab": spec.vocab_size, "source_url": spec.source_url,
    }


@click.group()
def models() -> None:
    """Model presets and model files."""


@models.command("list")
@format_option
def list_models(fmt: str) -> None:
    """List the shipped model presets with exact parameter counts."""
    rows = [_row(load_model(n)) for n in preset_paths()]
    cols = ["name", "params_total", "params_active", "layers", "d_model", "heads", "kv_heads",
            "attention", "experts", "vocab"]
    if fmt == "table":
        for r in rows:
            r["params_total"], r["params_active"] = f"{r['params_total']:,}", \
                f"{r['params_active']:,}"
    click.echo(render_rows(rows, cols, fmt), nl=False)


@models.command("show")
@click.argument("name")
@format_option
def show_model(name: str, fmt: str) -> None:
    """Show a preset, a model YAML file or a Hugging Face config.json, with its counts."""
    spec = load_model(name)
    p = count_params(spec)
    data = {**spec.model_dump(mode="json", exclude_none=True),
            "params_total": p.total, "params_active": p.active,
            "params_matmul_active": p.matmul_active, "params_embedding": p.embedding,
            "params_lm_head": p.lm_head, "attention_kind": spec.attention_kind}
    if fmt == "json":
        click.echo(dumps_json(data))
        return
    rows = [{"field": k, "value": (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool)
                                   and fmt == "table" else v)}
            for k, v in data.items()]
    click.echo(render_rows(rows, ["field", "value"], fmt), nl=False)
