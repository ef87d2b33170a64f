"""A fine-tuning recipe applied to the real model of `planner validate`: peft LoRA adapters on
the targeted Linears (peft's own get_peft_model), or the leading blocks frozen (partial)."""

from __future__ import annotations

from planner.errors import SpecError
from planner.estimators.finetune import resolve_targets
from planner.specs.finetune import FinetuneSpec
from planner.specs.model import ModelSpec

# peft module name -> the module path in profiling/model.py (dense FFNs and shared experts;
# routed experts stay untargeted, as estimators/finetune.py counts them)
_PATHS = {"q_proj": r"attn\.q", "k_proj": r"attn\.k", "v_proj": r"attn\.v",
          "o_proj": r"attn\.o", "q_a_proj": r"attn\.q_a", "q_b_proj": r"attn\.q_b",
          "kv_a_proj_with_mqa": r"attn\.kv_a", "kv_b_proj": r"attn\.kv_b",
          "gate_proj": r"mlp(\.shared)?\.gate", "up_proj": r"mlp(\.shared)?\.up",
          "down_proj": r"mlp(\.shared)?\.down"}


def target_regex(spec: ModelSpec, ft: FinetuneSpec) -> str:
    """peft target_modules (a full-match regex) naming the real model's modules."""
    names = resolve_targets(spec, ft.lora_targets)
    parts = [rf"blocks\.\d+\.{_PATHS[n]}" for n in names if n in _PATHS]
    parts += ["head"] * ("lm_head" in names) + ["embed"] * ("embed_tokens" in names)
    return "^(" + "|".join(parts) + ")$"


def apply_finetune(model, spec: ModelSpec, ft: FinetuneSpec | None, device: str):
    """The model to train: as built (full), with frozen leading blocks (partial), or wrapped
    by peft with LoRA adapters (lora). qlora needs bitsandbytes on a GPU: refused here."""
    if ft is None or ft.mode == "full":
        return model
    if ft.mode == "qlora":
        raise SpecError("--finetune qlora: validate builds NF4 weights with bitsandbytes on a "
                        "CUDA GPU only; use --finetune lora on this machine")
    if ft.mode == "partial":
        keep = set(range(spec.num_layers - (ft.trainable_layers or 0), spec.num_layers))
        for name, p in model.named_parameters():
            block = name.split(".")[1] if name.startswith("blocks.") else None
            p.requires_grad_(
                (block is not None and int(block) in keep) or
                (name.startswith("norm.") and bool(keep)) or
                (ft.train_lm_head and name.startswith(("head", "head_bias"))) or
                (ft.train_embeddings and name.startswith(("embed", "pos"))) or
                (ft.train_lm_head and spec.tie_embeddings and name.startswith("embed")))
        return model
    if ft.expert_targets:
        raise SpecError("--lora-targets experts: validate's torch model keeps its experts as "
                        "separate Linears; LoRA on fused experts (peft target_parameters) is "
                        "checked by its counts only (tests/test_finetune.py)")
    try:
        import peft
    except ImportError:
        raise SpecError("--finetune lora needs peft: pip install 'planner[profile]' "
                        "(or pip install peft)") from None
    saved = [m for m, on in (("head", ft.train_lm_head), ("embed", ft.train_embeddings)) if on]
    config = peft.LoraConfig(r=ft.lora_rank, lora_alpha=ft.lora_alpha,
                             lora_dropout=ft.lora_dropout, use_dora=ft.use_dora,
                             target_modules=target_regex(spec, ft), bias=ft.lora_bias,
                             modules_to_save=saved or None)
    return peft.get_peft_model(model, config)
