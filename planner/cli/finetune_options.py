"""Fine-tuning options of `estimate` and `plan`: the recipe and the dataset's size."""

from __future__ import annotations

import click

from planner.cli.options import COUNT, TEXT, BoundedInt, FiniteFloat
from planner.specs.finetune import FINETUNE_MODES
from planner.units import MAX_EPOCHS


def finetune_options(f=None, *, data: bool = True):
    """--finetune MODE plus the LoRA / partial settings and (``data``) --epochs, --samples,
    --packing and --avg-sample-tokens."""
    if f is None:
        return lambda g: finetune_options(g, data=data)
    opts = [
        click.option("--finetune", type=click.Choice(FINETUNE_MODES),
                     help="Fine-tune instead of pre-train: full, partial (last N blocks), "
                          "lora, qlora (NF4 base + LoRA)."),
        click.option("--lora-rank", type=BoundedInt(min=1), help="LoRA rank r (default 16)."),
        click.option("--lora-alpha", type=FiniteFloat(min=0, min_open=True),
                     help="LoRA alpha (default 16; moves neither memory nor time)."),
        click.option("--lora-targets", type=TEXT,
                     help="Modules given adapters, as peft names them (q_proj,v_proj,...) or "
                          "short (q,k,v,o,gate,up,down), or all-linear; default q,v."),
        click.option("--lora-dropout", type=FiniteFloat(min=0, max=1, max_open=True),
                     help="peft's lora_dropout (default 0; above 0 each adapter saves a "
                          "dropped copy of its input and a mask)."),
        click.option("--dora", "use_dora", is_flag=True, default=None,
                     help="peft's use_dora: LoRA plus a trainable magnitude per output "
                          "feature (its weight-norm cost is not modelled)."),
        click.option("--lora-bias", type=click.Choice(["none", "all", "lora_only"]),
                     help="peft's bias setting (default none)."),
        click.option("--trainable-layers", type=BoundedInt(min=0),
                     help="partial: how many of the last blocks train."),
        click.option("--train-embeddings", is_flag=True, default=None,
                     help="Train the input embedding in full too."),
        click.option("--train-lm-head", is_flag=True, default=None,
                     help="Train the LM head in full too."),
        click.option("--epochs", type=FiniteFloat(min=0, max=MAX_EPOCHS, min_open=True),
                     help="Passes over the data (tokens or samples are one epoch)."),
        click.option("--samples", type=COUNT,
                     help="Dataset size in samples (x --avg-sample-tokens, else x --seq-len)."),
        click.option("--packing", type=click.Choice(["on", "off"]),
                     help="on (default): samples packed into full --seq-len rows; off: each "
                          "sample padded to --seq-len (padding costs FLOPs and time)."),
        click.option("--avg-sample-tokens", type=BoundedInt(min=1),
                     help="Mean tokens per sample (with --samples or --packing off)."),
    ]
    if not data:  # `budget --model` answers the data size itself
        opts = opts[:-4]
    for opt in reversed(opts):
        f = opt(f)
    return f
