"""FinetuneSpec: what a fine-tuning run trains (full, partial, LoRA, QLoRA) and how it stores
the frozen base model. Module names are peft's (``q_proj``, ``down_proj``...); the short forms
``q k v o gate up down`` are accepted and stored as peft spells them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from planner.specs.base import PositiveWhole, Spec, Whole

FINETUNE_MODES = ("full", "partial", "lora", "qlora")
FinetuneMode = Literal[FINETUNE_MODES]

# short name -> the module name peft matches (Llama/Qwen/Gemma/Mistral naming in transformers)
SHORT_TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
                 "gate": "gate_proj", "up": "up_proj", "down": "down_proj",
                 "head": "lm_head", "embed": "embed_tokens"}
# peft's default target_modules for llama-family models
# (peft/utils/constants.py TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: ["q_proj", "v_proj"])
PEFT_DEFAULT_TARGETS = ("q_proj", "v_proj")
ALL_LINEAR = "all-linear"  # peft's shorthand: every Linear but the output head
# transformers >= 5 stores routed experts as fused 3-D parameters, (E, 2f, h) / (E, h, f) or
# (E, h, 2f) / (E, f, h); peft reaches them through LoraConfig(target_parameters=[...])
EXPERT_TARGETS = ("experts.gate_up_proj", "experts.down_proj")

# bitsandbytes NF4 (Dettmers et al. 2023, QLoRA §3; bitsandbytes Params4bit): 4-bit codes,
# one absmax per 64 weights; double quantisation stores those absmaxes as 8-bit codes with
# one fp32 absmax (and the fp32 mean offset) per 256 of them.
NF4_BLOCK_SIZE = 64
NF4_DOUBLE_QUANT_BLOCK_SIZE = 256


def normalise_targets(names: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """Target names as peft spells them: short forms expanded, duplicates dropped, order kept."""
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    out: list[str] = []
    for raw in names:
        name = str(raw).strip()
        if not name:
            raise ValueError("an empty target module name; give e.g. q,k,v,o or q_proj,v_proj")
        for full in (EXPERT_TARGETS if name == "experts" else (SHORT_TARGETS.get(name, name),)):
            if full not in out:
                out.append(full)
    return tuple(out)


class FinetuneSpec(Spec):
    """A fine-tuning recipe. ``mode`` full trains every weight; partial trains the last
    ``trainable_layers`` blocks (and the final norm); lora/qlora train low-rank adapters on
    ``lora_targets`` (qlora keeps the frozen base in NF4)."""

    mode: FinetuneMode = Field(description="full | partial | lora | qlora.")
    lora_rank: PositiveWhole = Field(16, description="LoRA rank r (lora/qlora).")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA alpha (scales the update by "
                              "alpha/r; moves neither memory nor time).")
    lora_targets: tuple[str, ...] = Field(
        PEFT_DEFAULT_TARGETS, description="Modules given adapters, as peft names them "
        "(q_proj, ..., down_proj, lm_head) or 'all-linear'; short q,k,v,o,gate,up,down too.")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="peft's lora_dropout: above 0 "
                                "each adapter saves its own dropped input and a 1-byte mask.")
    use_dora: bool = Field(False, description="peft's use_dora (Liu et al. 2024): a trainable "
                           "magnitude per output feature of each targeted module; its per-step "
                           "weight-norm compute and memory are not modelled.")
    lora_bias: Literal["none", "all", "lora_only"] = Field(
        "none", description="peft's bias: none; all (every bias trains); lora_only.")
    train_embeddings: bool = Field(False, description="The input embedding trains in full "
                                   "(peft modules_to_save: a trainable copy).")
    train_lm_head: bool = Field(False, description="The LM head trains in full "
                                "(peft modules_to_save: a trainable copy).")
    trainable_layers: Whole | None = Field(
        None, description="partial: how many of the last blocks train (the rest are frozen).")
    adapter_precision: Literal["fp32", "bf16"] | None = Field(
        None, description="Dtype of the LoRA weights and gradients; default fp32 for lora "
        "(peft casts adapters up: autocast_adapter_dtype=True), bf16 for qlora (as the QLoRA "
        "reference code, qlora.py, casts them).")
    quant_block_size: PositiveWhole = Field(NF4_BLOCK_SIZE, description="NF4 block size "
                                            "(qlora; bitsandbytes default 64).")
    double_quant: bool = Field(True, description="qlora: 8-bit quantised block scales.")
    paged_optimizer: bool = Field(True, description="qlora: paged 8-bit AdamW (optimizer "
                                  "state pages to host memory under pressure).")

    @field_validator("lora_targets", mode="before")
    @classmethod
    def _targets(cls, v):
        return normalise_targets(v)

    @model_validator(mode="after")
    def _check(self) -> FinetuneSpec:
        if self.mode == "partial" and self.trainable_layers is None:
            raise ValueError("mode partial needs trainable_layers (the last N blocks that "
                             "train), e.g. trainable_layers: 4")
        if self.mode != "partial" and self.trainable_layers is not None:
            raise ValueError(f"trainable_layers is for mode partial (mode is {self.mode})")
        if self.use_dora and not self.uses_lora:
            raise ValueError(f"use_dora (--dora) needs mode lora or qlora (mode is "
                             f"{self.mode})")
        if self.expert_targets and self.uses_lora:
            # peft ParamWrapper.update_layer refuses these (peft/tuners/lora/layer.py)
            for bad, what in ((self.lora_dropout > 0, "lora_dropout > 0"),
                              (self.use_dora, "use_dora"), (self.mode == "qlora", "qlora")):
                if bad:
                    raise ValueError(f"lora_targets experts (peft target_parameters) does not "
                                     f"work with {what} (peft refuses it); drop one of them")
        if ALL_LINEAR in self.lora_targets and len(self.lora_targets) > 1:
            raise ValueError("lora_targets: 'all-linear' stands alone; give it or a list")
        return self

    @property
    def expert_targets(self) -> tuple[str, ...]:
        """The fused expert parameters targeted (peft target_parameters)."""
        return tuple(t for t in self.lora_targets if t in EXPERT_TARGETS)

    @property
    def uses_lora(self) -> bool:
        return self.mode in ("lora", "qlora")

    @property
    def adapter_bytes(self) -> int:
        """Bytes per LoRA weight (and gradient): adapter_precision, or its default."""
        precision = self.adapter_precision or ("bf16" if self.mode == "qlora" else "fp32")
        return 2 if precision == "bf16" else 4

    @property
    def lora_scaling(self) -> float:
        """alpha / r, the factor peft applies to the adapter's output."""
        return self.lora_alpha / self.lora_rank
