"""Trainable and frozen parameters of a fine-tuning recipe (exact, as peft counts them).

LoRA (Hu et al. 2021 §4.1; peft ``LoraLayer.update_layer``): a targeted Linear(in, out) gains
A (r x in) and B (out x r): r * (in + out) trainable parameters; a targeted Embedding(V, h)
gains A (r x V) and B (h x r). DoRA (Liu et al. 2024; peft ``DoraLinearLayer.update_layer``)
adds a magnitude vector: ``out`` more per Linear, ``h`` per Embedding. ``modules_to_save`` (embeddings/head trained in full) keeps the
frozen original and adds a trainable copy, as peft's ``ModulesToSaveWrapper`` does.
Routed experts are not targeted: transformers >= 5 stores them as fused 3-D parameters that
peft's ``target_modules`` does not match (dense FFN layers and shared experts are matched).
"""

from __future__ import annotations

from functools import lru_cache

from planner.errors import InfeasibleError, SpecError
from planner.estimators.params import count_params
from planner.results import frozen
from planner.specs.finetune import ALL_LINEAR, EXPERT_TARGETS, FinetuneSpec
from planner.specs.model import ModelSpec


@frozen
class LinearModule:
    """One Linear per block (or the head), by the name peft matches."""

    name: str
    in_features: int
    out_features: int
    bias: bool
    num_layers: int  # blocks that have it (1 for lm_head)
    kind: str  # "attention" | "ffn" | "head"


@frozen
class TrainableParams:
    """A recipe's parameters: what trains, what is frozen, what peft adds (exact integers)."""

    base: int  # the model's own parameters
    adapters: int  # LoRA A and B matrices
    copies: int  # modules_to_save copies (trainable)
    trainable_base: int  # base parameters that still train (full, partial, biases)
    adapters_per_layer: float  # adapter parameters in one block, on average
    trainable_layers: int  # blocks whose own weights train (full: all; partial: N; lora: 0)
    expert_adapters: int = 0  # LoRA on fused routed experts (peft target_parameters)

    @property
    def trainable(self) -> int:
        """What peft's print_trainable_parameters() calls trainable params."""
        return self.adapters + self.copies + self.trainable_base + self.expert_adapters

    @property
    def total(self) -> int:
        """What peft calls all params: base + adapters + copies."""
        return self.base + self.adapters + self.copies + self.expert_adapters

    @property
    def frozen(self) -> int:
        """Base parameters that do not train (stored, never updated)."""
        return self.base - self.trainable_base

    @property
    def trainable_fraction(self) -> float:
        return self.trainable / self.total


def block_linears(model: ModelSpec) -> tuple[LinearModule, ...]:
    """The Linear modules of the blocks and the head, named as transformers' Llama-family
    models name them (MLA as DeepSeek's; routed experts excluded, see the module docstring)."""
    h, a, g, d = model.d_model, model.num_heads, model.kv_heads, model.d_head
    L = model.num_layers
    out: list[LinearModule] = []
    if model.mla:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            out += [LinearModule("q_a_proj", h, m.q_lora_rank, False, L, "attention"),
                    LinearModule("q_b_proj", m.q_lora_rank, a * qk, False, L, "attention")]
        else:
            out.append(LinearModule("q_proj", h, a * qk, False, L, "attention"))
        out += [LinearModule("kv_a_proj_with_mqa", h, m.kv_lora_rank + m.qk_rope_head_dim,
                             False, L, "attention"),
                LinearModule("kv_b_proj", m.kv_lora_rank,
                             a * (m.qk_nope_head_dim + m.v_head_dim), False, L, "attention"),
                LinearModule("o_proj", a * m.v_head_dim, h, False, L, "attention")]
    else:
        qkv = model.qkv_bias
        out += [LinearModule("q_proj", h, a * d, qkv, L, "attention"),
                LinearModule("k_proj", h, g * d, qkv, L, "attention"),
                LinearModule("v_proj", h, g * d, qkv, L, "attention"),
                LinearModule("o_proj", a * d, h, model.attn_out_bias, L, "attention")]
    out += _ffn_linears(model)
    out.append(LinearModule("lm_head", h, model.vocab_size, model.lm_head_bias, 1, "head"))
    return tuple(out)


def _ffn_linears(model: ModelSpec) -> list[LinearModule]:
    """gate/up/down of the dense FFN layers, and of the shared experts of MoE layers."""
    h, b = model.d_model, model.mlp_bias
    groups = [(model.ffn_hidden_size, model.num_dense_ffn_layers)]
    if model.moe and model.moe.shared_width:
        groups.append((model.moe.shared_width, model.num_moe_layers))
    out = []
    for width, layers in groups:
        if not layers:
            continue
        if model.ffn_type == "gated":
            out.append(LinearModule("gate_proj", h, width, b, layers, "ffn"))
        out += [LinearModule("up_proj", h, width, b, layers, "ffn"),
                LinearModule("down_proj", width, h, b, layers, "ffn")]
    return out


def linear_names(model: ModelSpec) -> tuple[str, ...]:
    """The module names a LoRA target can be, for this model (in block order), plus
    embed_tokens."""
    names: list[str] = []
    for lin in block_linears(model):
        if lin.name not in names:
            names.append(lin.name)
    experts = EXPERT_TARGETS if model.moe and model.ffn_type == "gated" else ()
    return (*names, "embed_tokens", *experts)


def expert_parameters(model: ModelSpec) -> dict[str, tuple[int, int]]:
    """Fused routed-expert parameters peft can target, name -> (in + out, in x out) of one
    expert (gate_up: h and 2 f; down: f and h), as transformers >= 5 stores them."""
    if not model.moe or model.ffn_type != "gated":
        return {}
    h, f = model.d_model, model.moe.expert_ffn_hidden_size
    return {"experts.gate_up_proj": (h + 2 * f, 2 * h * f), "experts.down_proj": (f + h, f * h)}


def resolve_targets(model: ModelSpec, targets: tuple[str, ...]) -> tuple[str, ...]:
    """The targets, checked against the model's modules; 'all-linear' = every block Linear
    (peft excludes the output head). Raises SpecError naming the valid modules."""
    valid = linear_names(model)
    if targets == (ALL_LINEAR,):
        return tuple(n for n in valid if n not in ("lm_head", "embed_tokens", *EXPERT_TARGETS))
    for t in targets:
        if t in EXPERT_TARGETS and t not in valid:
            why = "no routed experts" if not model.moe else "no gated (gate_up_proj) experts"
            raise SpecError(f"--lora-targets experts: {model.name} has {why} to target; "
                            f"valid: {', '.join(valid)}")
        if t not in valid:
            from difflib import get_close_matches

            near = get_close_matches(t, valid, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise SpecError(f"--lora-targets: {model.name} has no module '{t}'{hint}; valid: "
                            f"{', '.join(valid)} (or q,k,v,o,gate,up,down{', experts' if model.moe and model.ffn_type == 'gated' else ''}; or all-linear)")
    return targets


@lru_cache(maxsize=256)
def trainable_params(model: ModelSpec, ft: FinetuneSpec) -> TrainableParams:
    """Exact trainable/frozen parameter counts of a recipe (peft's arithmetic for LoRA)."""
    p = count_params(model)
    base = p.total
    if ft.mode == "full":
        return TrainableParams(base, 0, 0, base, 0.0, model.num_layers)
    head_mods = _head_params(model, ft, p)
    if ft.mode == "partial":
        n = min(ft.trainable_layers or 0, model.num_layers)
        layers = _last_layers_params(model, p, n)
        return TrainableParams(base, 0, 0, layers + p.final_norm * (n > 0) + head_mods[0],
                               0.0, n)
    targets = resolve_targets(model, ft.lora_targets)
    r, adapters, block_adapters = ft.lora_rank, 0, 0
    dora = ft.use_dora  # peft lora_magnitude_vector: one per output feature (DoRA)
    for lin in block_linears(model):
        if lin.name in targets:
            n = (r * (lin.in_features + lin.out_features) + dora * lin.out_features) * \
                lin.num_layers
            adapters += n
            block_adapters += n if lin.kind != "head" else 0
    if "embed_tokens" in targets:  # A (r x V), B (h x r); DoRA: a magnitude per dim
        adapters += r * (model.vocab_size + model.d_model) + dora * model.d_model
    biases = _bias_params(model, ft, targets)
    # peft ParamWrapper on a (E, in, out) parameter: lora_A Linear(in, r E), lora_B
    # Linear(r E, out): r E (in + out) per MoE layer
    experts = sum(r * model.moe.num_experts * width * model.num_moe_layers
                  for name, (width, _) in expert_parameters(model).items() if name in targets)
    return TrainableParams(base, adapters, head_mods[1], biases,
                           block_adapters / model.num_layers, 0, experts)


def _head_params(model: ModelSpec, ft: FinetuneSpec, p) -> tuple[int, int]:
    """(base params that train, modules_to_save copies) for the embedding/head options."""
    emb = p.embedding + p.positions
    head = p.lm_head if p.lm_head else 0
    if ft.mode == "partial":  # trained in place
        trained = (emb if ft.train_embeddings else 0) + (head if ft.train_lm_head else 0)
        if model.tie_embeddings and ft.train_lm_head and not ft.train_embeddings:
            trained += p.embedding  # the head is the embedding
        return trained, 0
    copies = (p.embedding if ft.train_embeddings else 0)
    if ft.train_lm_head:
        copies += p.lm_head if p.lm_head else p.vocab_times_width
    return 0, copies


def _last_layers_params(model: ModelSpec, p, n: int) -> int:
    """Parameters of the last n blocks (dense and MoE layers as the pattern places them)."""
    kinds = model.layer_is_moe()[model.num_layers - n:] if n else ()
    total = 0
    for moe in kinds:
        layer = p.moe_layer if moe else p.dense_layer
        total += layer.total if layer else 0
    return total


def _bias_params(model: ModelSpec, ft: FinetuneSpec, targets: tuple[str, ...]) -> int:
    """Biases that train: 'all' = every bias of the model; 'lora_only' = the targeted ones."""
    if ft.lora_bias == "none":
        return 0
    total = 0
    for lin in block_linears(model):
        if lin.bias and (ft.lora_bias == "all" or lin.name in targets):
            total += lin.out_features * lin.num_layers
    if ft.lora_bias == "all" and model.norm_type == "layernorm" and model.norm_bias:
        total += model.d_model * (model.norms_per_layer * model.num_layers + 1)
    return total


# bitsandbytes' NF4 kernels: CUDA (NVIDIA), ROCm (AMD), Intel XPU/Gaudi backends
# (bitsandbytes docs, "Installation: multi-backend"); none for TPU or Trainium.
NF4_VENDORS = ("NVIDIA", "AMD", "Intel")


def check_finetune(model: ModelSpec, precision: str, hw_name: str, vendor: str,
                   supported: list[str], ft: FinetuneSpec | None) -> None:
    """Raise SpecError (one line) when a recipe cannot run: targets the model lacks, QLoRA
    without a 16-bit compute dtype on the device; InfeasibleError on a device without NF4
    kernels."""
    if ft is None:
        return
    if ft.uses_lora:
        resolve_targets(model, ft.lora_targets)
    if ft.mode != "qlora":
        return
    if vendor not in NF4_VENDORS:
        # the hardware cannot, whatever the flags: compare and run leave it out with this line
        raise InfeasibleError(f"--finetune qlora: {hw_name} ({vendor}) has no bitsandbytes NF4 "
                        f"kernels; QLoRA runs on {', '.join(NF4_VENDORS)} devices (or use "
                        "--finetune lora)")
    sixteen = [p for p in ("bf16", "fp16") if p in supported]
    if precision not in ("bf16", "fp16") or precision not in supported:
        raise SpecError(f"--finetune qlora computes in bf16 or fp16 (bnb_4bit_compute_dtype); "
                        f"--precision {precision} is not valid on {hw_name}; valid: "
                        f"{', '.join(sixteen) or 'none (no 16-bit peak on this device)'}")


def finetune_summary(model: ModelSpec, ft: FinetuneSpec | None) -> dict:
    """The ModelSummary fields of a recipe: its one-line name, trainable and frozen counts."""
    if ft is None:
        return {}
    t = trainable_params(model, ft)
    if ft.mode == "partial":
        what = f"partial: last {t.trainable_layers} of {model.num_layers} blocks"
    elif ft.uses_lora:
        what = f"{ft.mode} r{ft.lora_rank} on {','.join(resolve_targets(model, ft.lora_targets))}"
        if ft.use_dora:
            what += " + DoRA magnitudes (weight-norm compute and memory not modelled)"
    else:
        what = "full"
    extras = [n for n, on in (("embeddings", ft.train_embeddings),
                              ("lm_head", ft.train_lm_head)) if on]
    if extras and ft.mode != "full":
        what += " + " + ",".join(extras) + " trained in full"
    return {"finetune": what, "params_trainable": t.trainable, "params_frozen": t.frozen}


def adapter_grad_dtype(ft: FinetuneSpec | None) -> str | None:
    """The dtype LoRA adapters' (and modules_to_save copies') gradients are held in: their
    adapter_precision (finetune_memory charges ft.adapter_bytes for them); None without
    adapters."""
    if ft is None or not ft.uses_lora:
        return None
    return "bf16" if ft.adapter_bytes == 2 else "fp32"


def trains_base_weights(model: ModelSpec, ft: FinetuneSpec | None) -> bool:
    """Whether any of the model's own parameters train (their gradients follow grad_dtype):
    always without adapters; with LoRA only its trained biases."""
    return ft is None or not ft.uses_lora or trainable_params(model, ft).trainable_base > 0
