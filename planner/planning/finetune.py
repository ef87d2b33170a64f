"""Fine-tuning questions: the recipe from plain options, the dataset as tokens or samples x
sequence length x epochs, and the defaults a fine-tune fills differently from pre-training
(each recorded as an Assumption). `resolve` is the only caller."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from planner.catalog.yamlio import format_validation_error
from planner.errors import SpecError
from planner.results import Assumption
from planner.specs.finetune import FinetuneSpec
from planner.units import MAX_COUNT, MAX_EPOCHS

DATA_KEYS = ("epochs", "samples", "packing", "avg_sample_tokens")
FINETUNE_KEYS = ("finetune", "lora_rank", "lora_alpha", "lora_targets", "lora_dropout",
                 "lora_bias", "use_dora", "packing", "avg_sample_tokens",
                 "trainable_layers", "train_embeddings", "train_lm_head", "epochs", "samples")
# spec field -> CLI flag, for one-line errors
FLAGS = {"mode": "--finetune", "lora_rank": "--lora-rank", "lora_alpha": "--lora-alpha",
         "lora_targets": "--lora-targets", "lora_bias": "--lora-bias",
         "lora_dropout": "--lora-dropout", "use_dora": "--dora",
         "trainable_layers": "--trainable-layers"}

DEFAULT_SEQ_LEN = 1024
SEQ_LEN_SOURCE = ("TRL SFTConfig's max_length default (1024 tokens); fine-tuning sets are "
                  "instructions and chats, far shorter than a model's context")
DEFAULT_GLOBAL_BATCH = 16
BATCH_SOURCE = ("the QLoRA reference recipe (artidoro/qlora qlora.py: per-device batch 1 x "
                "16 accumulation steps; the Guanaco scripts 4 x 4)")
DEFAULT_SAMPLES = 52_002
SAMPLES_SOURCE = "one epoch of Alpaca's 52,002 instructions (Taori et al. 2023)"
MODE_OPTIMIZER = {"qlora": "adamw_8bit"}  # paged 8-bit AdamW


def pop_finetune(options: dict[str, Any]) -> dict[str, Any]:
    """The fine-tuning options, removed from ``options`` (None values dropped)."""
    return {k: v for k in FINETUNE_KEYS if (v := options.pop(k, None)) is not None}


def finetune_spec(opts: dict[str, Any]) -> FinetuneSpec | None:
    """The recipe from plain options (``finetune`` = mode name, a dict or a FinetuneSpec);
    recipe options without --finetune are an error naming the flag."""
    mode = opts.get("finetune")
    fields = {k: v for k, v in opts.items() if k != "finetune" and k not in DATA_KEYS}
    if mode is None:
        if fields:
            flag = FLAGS.get(next(iter(fields)), "--" + next(iter(fields)).replace("_", "-"))
            raise SpecError(f"{flag} needs --finetune full|partial|lora|qlora")
        return None
    if isinstance(mode, FinetuneSpec):
        return mode.model_copy(update=fields) if fields else mode
    data = dict(mode) if isinstance(mode, dict) else {"mode": mode}
    data.update(fields)
    if data.get("mode") == "partial" and data.get("trainable_layers") is None:
        raise SpecError("--finetune partial needs --trainable-layers N (the last N blocks "
                        "that train; the rest stay frozen)")
    try:
        return FinetuneSpec.model_validate(data)
    except ValidationError as e:
        msg = format_validation_error(e, "finetune")
        for name, flag in FLAGS.items():
            msg = msg.replace(f"finetune: {name}:", f"{flag}:")
        raise SpecError(msg) from None


def check_layers(ft: FinetuneSpec, model) -> None:
    """SpecError naming --trainable-layers when a partial fine-tune asks for more blocks than
    the model has (never silently all of them)."""
    n, total = ft.trainable_layers, model.num_layers
    if ft.mode == "partial" and n is not None and not 0 <= n <= total:
        raise SpecError(f"--trainable-layers {n}: {model.name} has {total} layers; give 0 to "
                        f"{total} (--finetune full trains them all)")


def _note(name: str, value, unit: str, source: str, defaulted: bool = True) -> Assumption:
    return Assumption(name=name, value=value, unit=unit, source=source, defaulted=defaulted)


def data_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The dataset options among ``opts`` (as dataset_tokens takes them)."""
    return {k: opts[k] for k in DATA_KEYS if k in opts}


PADDING_SOURCE = ("--packing off: every sample padded to --seq-len (padding='max_length'; "
                  "padding to each batch's longest sample costs less, packing least)")


def dataset_tokens(tokens: float | None, samples: float | None, epochs: float | None,
                   seq_len: int, packing: str | None = None,
                   avg_sample_tokens: int | None = None) -> tuple[float, list[Assumption]]:
    """Tokens processed, padding included: per epoch the useful tokens (--tokens, or samples
    x avg_sample_tokens, or samples x seq_len), packed into full rows; with packing off each
    sample is a row of seq_len (samples = tokens / avg_sample_tokens), times epochs. With no
    data size, one epoch of Alpaca (recorded)."""
    if tokens is not None and samples is not None:
        raise SpecError("--tokens and --samples both given; give one (samples are counted "
                        "as samples x --avg-sample-tokens, or x --seq-len)")
    if epochs is not None and not 0 < epochs <= MAX_EPOCHS:
        raise SpecError(f"--epochs: must be more than 0 and at most {MAX_EPOCHS:g} (got "
                        f"{epochs:g})")
    if avg_sample_tokens is not None and avg_sample_tokens > seq_len:
        raise SpecError(f"--avg-sample-tokens {avg_sample_tokens}: longer than --seq-len "
                        f"{seq_len} (samples would be truncated); give at most {seq_len} or "
                        "a longer --seq-len")
    notes = []
    if tokens is None and samples is None:
        samples = DEFAULT_SAMPLES
        notes.append(_note("samples", samples, "sequences", SAMPLES_SOURCE))
    per_sample = avg_sample_tokens or seq_len
    if packing == "off":
        if samples is None and avg_sample_tokens is None:
            raise SpecError("--packing off with --tokens needs --avg-sample-tokens N (the "
                            "mean sample length, to count the samples padded to --seq-len)")
        n = samples if samples is not None else tokens / per_sample
        useful = tokens if tokens is not None else n * per_sample
        processed = n * seq_len
        notes.append(_note("packing", "off", "", f"{PADDING_SOURCE}: {n:,.0f} samples x "
                           f"{seq_len} = {processed:,.0f} tokens per epoch for {useful:,.0f} "
                           f"useful ({1 - useful / processed:.0%} padding)", defaulted=False))
        tokens = processed
    else:
        tokens = samples * per_sample if tokens is None else tokens
        if packing == "on" or avg_sample_tokens is not None:
            notes.append(_note("packing", "on", "", "samples packed into full --seq-len rows "
                               "(TRL SFTConfig packing=True): no padding; attention spans the "
                               "whole row; --packing off pads each sample",
                               defaulted=packing is None))
    n_epochs = 1.0 if epochs is None else float(epochs)
    if epochs is None:
        notes.append(_note("epochs", 1, "", "planner default: one pass over the data"))
    total = tokens * n_epochs
    if total > MAX_COUNT:
        raise SpecError(f"--epochs {n_epochs:g}: {tokens:.3g} tokens per epoch x {n_epochs:g} "
                        f"epochs = {total:.3g} tokens, more than the {MAX_COUNT:g} a plan takes "
                        "(as --tokens); give fewer --epochs or a smaller dataset")
    notes.append(_note("dataset_tokens", total, "tokens",
                       f"{tokens:,.0f} tokens per epoch x {n_epochs:g} epochs", defaulted=False))
    return total, notes


KERNELS_SOURCE = ("planner default for fine-tuning: eager PyTorch kernels, as peft with the "
                  "Hugging Face Trainer runs (one kernel per op; ~10x the fused elementwise "
                  "traffic, docs/performance-model.md); --kernels fused for Unsloth, Liger, "
                  "torch.compile or a Megatron/NeMo stack")


def finetune_defaults(ft: FinetuneSpec, train: dict[str, Any], max_seq_len: int
                      ) -> list[Assumption]:
    """Fill a fine-tune's seq_len, global batch and optimizer where not given (in ``train``);
    each default is returned as an Assumption."""
    notes = []
    if train.get("seq_len") is None:
        train["seq_len"] = min(DEFAULT_SEQ_LEN, max_seq_len)
        notes.append(_note("seq_len", train["seq_len"], "tokens", SEQ_LEN_SOURCE))
    if train.get("global_batch_size") is None:
        train["global_batch_size"] = DEFAULT_GLOBAL_BATCH
        notes.append(_note("global_batch_size", DEFAULT_GLOBAL_BATCH, "sequences",
                           BATCH_SOURCE))
    if train.get("optimizer") is None and ft.mode in MODE_OPTIMIZER:
        train["optimizer"] = MODE_OPTIMIZER[ft.mode]
        notes.append(_note("optimizer", "adamw_8bit (paged)", "", "QLoRA: paged 8-bit AdamW "
                           "(bitsandbytes paged_adamw_8bit; QLoRA §3 paged optimizers; "
                           "qlora.py's default is the 32-bit paged one: --optimizer adamw). "
                           "Paged moments move to host memory under pressure; counted here "
                           "as resident"))
    if train.get("kernels") is None:
        train["kernels"] = "eager"
        notes.append(_note("kernels", "eager", "", KERNELS_SOURCE))
    train["finetune"] = ft
    return notes


def recipe_notes(ft: FinetuneSpec) -> list[Assumption]:
    """The recipe's settings that were left at their defaults."""
    out = []
    src = {"lora_rank": "planner default (peft's LoraConfig default r is 8)",
           "lora_alpha": "planner default alpha = 16 (moves neither memory nor time)",
           "lora_targets": "peft's default for llama-family models: q_proj, v_proj",
           "adapter_precision": "fp32 adapters for lora (peft autocast_adapter_dtype); bf16 "
                                "for qlora (qlora.py casts LoRA layers to bf16)"}
    if not ft.uses_lora:
        return out
    for name, source in src.items():
        if name not in ft.model_fields_set:
            value = getattr(ft, name)
            if name == "lora_targets":
                value = ",".join(value)
            elif name == "adapter_precision":
                value = "bf16" if ft.adapter_bytes == 2 else "fp32"
            out.append(_note(f"finetune.{name}", value, "", source))
    if ft.use_dora:
        out.append(_note("finetune.use_dora", True, "", "DoRA (Liu et al. 2024) as peft "
                         "implements it: the magnitude vectors are counted and trained; each "
                         "step's weight-norm computation (the full W + s BA of every targeted "
                         "module, its column norms) and the extra saved outputs are NOT "
                         "modelled: memory and time are lower bounds", defaulted=False))
    if "lora_dropout" not in ft.model_fields_set:
        out.append(_note("finetune.lora_dropout", 0.0, "", "peft's LoraConfig default (dropout "
                         "> 0: each adapter saves a dropped copy of its input and a 1-byte "
                         "mask; --lora-dropout)"))
    return out
