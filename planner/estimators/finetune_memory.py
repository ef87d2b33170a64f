"""Memory of fine-tuning (docs/formulas.md §3.8): frozen weights at their storage precision,
trainable weights + gradients + optimizer state only, what frozen linears no longer save, the
LoRA branch's saved inputs, and QLoRA's NF4 storage and dequantisation workspace.

Called from estimators/memory.py for ``training.finetune`` (full fine-tuning is training and
takes the ordinary path). Branch-free on the layout: numbers or numpy arrays (vec.py).
"""

from __future__ import annotations

import math
from typing import Any

from planner.estimators.finetune import TrainableParams, block_linears, expert_parameters, \
    resolve_targets, trainable_params
from planner.estimators.model_state import model_state_bytes, state_bytes_per_param
from planner.estimators.params import ParamCount
from planner.estimators.vec import Degrees, vmax, vmin
from planner.specs.finetune import FinetuneSpec
from planner.specs.model import ModelSpec
from planner.specs.training import TrainingSpec

# LoRA optimizer state bytes per trainable parameter: m and v, fp32 (8 B) for AdamW, int8
# (2 B) for 8-bit AdamW (Dettmers et al. 2022); adapters keep no separate master copy (they
# are fp32 under peft's autocast_adapter_dtype, or bf16 updated in place as in qlora.py).
_ADAPTER_OPTIMIZER_BYTES = {"adamw": 8, "adamw_pure_bf16": 8, "adamw_all_bf16": 4,
                            "adamw_8bit": 2, "adamw_fp8": 8, "sgd_momentum": 4}
# bitsandbytes QuantState of one NF4 tensor besides codes and absmax: the 16-entry fp32 NF4
# code, and with double quantisation the 256-entry fp32 code of the absmax quantiser + its
# fp32 offset (bitsandbytes/functional.py quantize_4bit, QuantState.as_dict).
_NF4_TENSOR_CONSTANTS = 16 * 4
_DQ_TENSOR_CONSTANTS = 256 * 4 + 4


def nf4_bytes(numel: int, block: int = 64, double_quant: bool = True) -> float:
    """Bytes of one weight tensor in bitsandbytes NF4 (QLoRA §3): 4-bit codes (2 per byte),
    one absmax per ``block`` weights, as fp32 or (double quantisation) as uint8 codes with
    one fp32 absmax per 256 blocks: 0.5 + 1/64 + 4/(64*256) = 0.5159 B/param at block 64."""
    blocks = math.ceil(numel / block)
    codes = math.ceil(numel / 2)
    if double_quant:
        return codes + blocks + 4 * math.ceil(blocks / 256) + _NF4_TENSOR_CONSTANTS + \
            _DQ_TENSOR_CONSTANTS
    return codes + 4 * blocks + _NF4_TENSOR_CONSTANTS


def _quantized(model: ModelSpec, ft: FinetuneSpec) -> tuple[float, float, int]:
    """(NF4 params, NF4 bytes, largest such tensor's numel) per block, averaged over blocks:
    every Linear weight of the blocks (routed experts one tensor each); embeddings, head,
    norms and biases stay at 16 bits (transformers keeps the output head unquantised)."""
    numel = nbytes = 0.0
    largest = 0
    for lin in block_linears(model):
        if lin.kind == "head":
            continue
        n = lin.in_features * lin.out_features
        numel += n * lin.num_layers
        nbytes += nf4_bytes(n, ft.quant_block_size, ft.double_quant) * lin.num_layers
        largest = max(largest, n)
    if model.moe:  # routed experts: gate/up/down of each, in every MoE layer
        h, f = model.d_model, model.moe.expert_ffn_hidden_size
        mats = (h * f,) * (3 if model.ffn_type == "gated" else 2)
        per_expert = sum(nf4_bytes(n, ft.quant_block_size, ft.double_quant) for n in mats)
        count = model.moe.num_experts * model.num_moe_layers
        numel += sum(mats) * count
        nbytes += per_expert * count
        largest = max(largest, h * f)
    L = model.num_layers
    return numel / L, nbytes / L, largest


def frozen_bytes_per_param(precision: str) -> int:
    """Bytes of a frozen 16-bit (or fp32) weight: 4 in fp32/tf32, else 2."""
    return 4 if precision in ("fp32", "tf32") else 2


def _stage_placement(model: ModelSpec, lay: Degrees, per: Any, last: bool) -> tuple[Any, Any]:
    """(holds the embedding, holds the head): the first stage and the last stage."""
    only = lay.pp == 1
    return (only if last else 1), (1 if last else only)


def _trainable_layers_on_stage(model: ModelSpec, t: TrainableParams, per: Any, last: bool,
                               lay: Degrees) -> Any:
    """Blocks on this stage whose own weights train (partial: the last N of the model)."""
    n, L = t.trainable_layers, model.num_layers
    if last:
        return vmin(per, n)
    # the first stage holds blocks [0, per) (all L when pp = 1): trainable are those >= L - n
    return vmax(0, vmin(per, n - (L - per)))


def finetune_states(model: ModelSpec, training: TrainingSpec, lay: Degrees, p: ParamCount,
                    per: Any, base_local: Any, last: bool) -> tuple[Any, Any, Any]:
    """(weights, gradients, optimizer) bytes per device on a stage of ``per`` blocks holding
    ``base_local`` model parameters (already divided by tp and ep), for a partial, LoRA or
    QLoRA recipe. ZeRO shards as for training: stage 3 also shards the frozen weights."""
    ft = training.finetune
    t = trainable_params(model, ft)
    L, tp = model.num_layers, lay.tp
    emb_here, head_here = _stage_placement(model, lay, per, last)
    if ft.mode == "partial":
        layer_avg = p.layers_total / L
        trainable_base = _trainable_layers_on_stage(model, t, per, last, lay) * layer_avg / tp
        trainable_base = trainable_base + head_here * p.final_norm * (t.trainable_layers > 0)
        trainable_base = trainable_base + _head_trained(model, ft, p, emb_here, head_here) / tp
        extra = 0.0
    else:
        trainable_base = t.trainable_base * per / L / tp  # biases, spread over the blocks
        extra = (t.adapters_per_layer * per + _edge_adapters(model, ft, emb_here, head_here)) / tp
        extra = extra + t.expert_adapters * per / L / tp  # fused-expert LoRA, spread
        extra = extra + _copies(model, ft, p, emb_here, head_here) / tp
    frozen = vmax(0, base_local - trainable_base)
    shards = lay.shard * lay.cp  # the ZeRO shard group (dp x cp, or HSDP's dp_shard x cp)
    z3 = 1 + (shards - 1) * (lay.zero_stage == 3)
    w16 = frozen_bytes_per_param(training.precision)
    if ft.mode == "qlora":
        q_numel, q_bytes, _ = _quantized(model, ft)
        q_local = vmin(frozen, q_numel * per / tp)
        frozen_bytes = (frozen - q_local) * w16 + q_local * q_bytes / q_numel
    else:
        frozen_bytes = frozen * w16
    w, g, o = model_state_bytes(trainable_base, training.optimizer, training.precision,
                                lay.zero_stage, shards, lay.framework, training.grad_dtype)
    opt = _ADAPTER_OPTIMIZER_BYTES[training.optimizer]
    wa, ga, oa = model_state_bytes(extra, "adamw", "fp32", lay.zero_stage, shards)
    wb = ft.adapter_bytes / 4  # model_state_bytes' fp32 adamw is (4, 4, 8) bytes
    return frozen_bytes / z3 + w + wa * wb, g + ga * wb, o + oa * opt / 8


def finetune_checkpoint_bytes(model: ModelSpec, training: TrainingSpec) -> float:
    """Bytes of one checkpoint of a partial, LoRA or QLoRA fine-tune: what trains, its weights
    and optimizer state, at the bytes finetune_states holds them in (trainable base weights,
    biases included, at the recipe's weight + optimizer bytes; adapters and modules_to_save
    copies at ``adapter_bytes`` + the adapter optimizer's). The frozen base is already on disk
    and does not change, so it is not rewritten: peft's save_pretrained writes the adapters
    (and copies) only, the Trainer adds their optimizer state. A framework that saves a
    partial fine-tune's whole state_dict also writes its frozen weights; restarts need only
    what trains."""
    t = trainable_params(model, training.finetune)
    w, _, o = state_bytes_per_param(training.optimizer, training.precision)
    added = t.adapters + t.copies + t.expert_adapters
    return t.trainable_base * (w + o) + \
        added * (training.finetune.adapter_bytes + _ADAPTER_OPTIMIZER_BYTES[training.optimizer])


def _edge_adapters(model: ModelSpec, ft: FinetuneSpec, emb_here: Any, head_here: Any) -> Any:
    """LoRA parameters on the head and the embedding, on the stages that hold them."""
    targets = resolve_targets(model, ft.lora_targets)
    h, V, r = model.d_model, model.vocab_size, ft.lora_rank
    return head_here * r * (h + V) * ("lm_head" in targets) + \
        emb_here * r * (V + h) * ("embed_tokens" in targets)


def _copies(model: ModelSpec, ft: FinetuneSpec, p: ParamCount, emb_here: Any,
            head_here: Any) -> Any:
    """modules_to_save copies (trainable) on the stages that hold them."""
    head = p.lm_head if p.lm_head else p.vocab_times_width
    return emb_here * p.embedding * ft.train_embeddings + head_here * head * ft.train_lm_head


def _head_trained(model: ModelSpec, ft: FinetuneSpec, p: ParamCount, emb_here: Any,
                  head_here: Any) -> Any:
    """partial: embedding / head parameters trained in place on the stages holding them."""
    emb = (p.embedding + p.positions) * ft.train_embeddings * emb_here
    head = p.lm_head * ft.train_lm_head * head_here
    if model.tie_embeddings and ft.train_lm_head and not ft.train_embeddings:
        head = p.embedding * head_here
    return emb + head


def finetune_widths(model: ModelSpec, ft: FinetuneSpec, moe_layer: bool, replicated: float,
                    sharded: float, beta: float) -> tuple[float, float]:
    """(replicated, sharded) elements per token a LoRA block saves, from full training's
    (``beta``: bytes per saved activation element, for dropout's 1-byte masks).

    A frozen Linear's backward needs only its weight (dx = dy W), so the inputs that only
    Linears saved drop out: the first norm's output when none of q/k/v trains, the second
    norm's output when neither gate nor up does, the FFN product when down does not (the
    attention output stays: fused attention saves it). Each adapter saves its A output
    (r per token) for B's gradient; A's input is the Linear's input, kept once. With
    lora_dropout > 0, A's input is each adapter's own dropped copy (peft: lora_B(lora_A(
    dropout(x))), one nn.Dropout per adapter), and the dropout saves its mask: the shared
    input is no longer kept, each adapter adds its input width + a 1-byte mask of it.
    Partial and full fine-tuning keep the training widths; routed experts keep theirs."""
    if not ft.uses_lora:
        return replicated, sharded
    targets = set(resolve_targets(model, ft.lora_targets))
    width = model.moe.shared_width if (moe_layer and model.moe) else model.ffn_hidden_size
    if model.parallel_block or model.mla:  # the shared inputs are kept (conservative)
        rep, shr = _dropout_widths(model, ft, targets, width, beta)
        return replicated + rep, sharded + shr
    h = model.d_model
    drop = ft.lora_dropout > 0
    if drop or not targets & {"q_proj", "k_proj", "v_proj"}:
        replicated -= h
    if width:
        if (drop or not targets & {"gate_proj", "up_proj"}) and not (moe_layer and model.moe):
            replicated -= h  # (an MoE layer's router and experts still read it)
        if drop or "down_proj" not in targets:
            sharded -= width
    adapters = sum(1 for lin in block_linears(model) if lin.kind != "head"
                   and lin.name in targets and (lin.kind == "attention" or width))
    rep, shr = _dropout_widths(model, ft, targets, width, beta)
    return replicated + ft.lora_rank * adapters + rep, sharded + shr


def expert_merge_bytes(model: ModelSpec, training: TrainingSpec, lay: Degrees,
                       moe_layer: bool) -> Any:
    """Bytes one MoE layer keeps per micro-batch for LoRA on its fused experts: peft's
    ParamWrapper folds the adapters into the weight each forward (W + s lhs @ rhs, one
    baddbmm under torch parametrize), and the expert matmuls save that merged stack for
    their input gradient: E / ep x in x out per targeted parameter, in the weights' dtype."""
    ft = training.finetune
    if ft is None or not moe_layer or not ft.expert_targets:
        return 0.0
    per_expert = sum(n for name, (_, n) in expert_parameters(model).items()
                     if name in ft.expert_targets)
    return model.moe.num_experts / lay.ep * per_expert / lay.tp * \
        frozen_bytes_per_param(training.precision)


def _dropout_widths(model: ModelSpec, ft: FinetuneSpec, targets: set[str], width: int,
                    beta: float) -> tuple[float, float]:
    """(replicated, sharded) elements per token lora_dropout > 0 adds in one block: each
    adapter's dropped input (its Linear's input width) and its bool mask (1 byte per element,
    torch native_dropout on CUDA), as elements of ``beta`` bytes."""
    if not ft.lora_dropout > 0:
        return 0.0, 0.0
    rep, shr = _dropout_inputs(model, targets, width)
    per = 1 + 1 / beta
    return rep * per, shr * per


def _dropout_inputs(model: ModelSpec, targets: set[str], width: int) -> tuple[float, float]:
    """(replicated, sharded) input elements per token of one block's adapters: q/k/v/gate/up
    read the norm outputs (replicated under TP), o and down are row-parallel (sharded)."""
    rep = shr = 0.0
    for lin in block_linears(model):
        if lin.name not in targets or lin.kind != "attention":
            continue
        if lin.name == "o_proj" and not model.mla:
            shr += lin.in_features
        else:
            rep += lin.in_features
    if width:  # this layer's dense FFN or shared expert
        rep += model.d_model * len(targets & {"gate_proj", "up_proj"})
        shr += width * ("down_proj" in targets)
    return rep, shr


def lora_dropout_mask_elements(model: ModelSpec, ft: FinetuneSpec | None) -> float:
    """Dropout-mask elements per token of the whole model (one per adapter input element,
    less the first block's whose input needs no gradient, plus the head adapter's): what
    `planner validate` corrects for, as CPU dropout saves its mask in the input dtype where
    CUDA's native_dropout saves bools."""
    if ft is None or not ft.uses_lora or not ft.lora_dropout > 0:
        return 0.0
    targets = set(resolve_targets(model, ft.lora_targets))
    total = 0.0
    for moe_layer in model.layer_is_moe():
        width = model.moe.shared_width if (moe_layer and model.moe) else model.ffn_hidden_size
        total += sum(_dropout_inputs(model, targets, width or 0))
    if not ft.train_embeddings and "embed_tokens" not in targets and not model.mla and \
            not model.parallel_block:
        total -= _first_block_masks(model, ft, targets)
    return total + model.d_model * ("lm_head" in targets)


def grad_layer_fraction(model: ModelSpec, training: TrainingSpec, lay: Degrees, per: Any,
                        last: bool) -> Any:
    """Share of a stage's blocks that keep activations for backward: partial fine-tuning
    runs no backward through the frozen blocks before the first trainable one (autograd
    records nothing there); every other recipe back-propagates through every block."""
    ft = training.finetune
    if ft is None or ft.mode != "partial":
        return 1.0
    t = trainable_params(model, ft)
    return _trainable_layers_on_stage(model, t, per, last, lay) / per


def dequant_workspace_bytes(model: ModelSpec, training: TrainingSpec, lay: Degrees) -> Any:
    """QLoRA: one weight dequantised to the 16-bit compute dtype at a time (bitsandbytes
    MatMul4Bit dequantizes, multiplies and frees): the largest block Linear, / tp."""
    ft = training.finetune
    if ft is None or ft.mode != "qlora":
        return 0.0
    _, _, largest = _quantized(model, ft)
    return largest * frozen_bytes_per_param(training.precision) / lay.tp


def dequant_bytes_per_pass(model: ModelSpec, ft: FinetuneSpec | None) -> float:
    """QLoRA HBM traffic of one dequantisation pass over every block's weights (each
    micro-batch's forward and backward make one each): NF4 read + 16-bit write, bytes."""
    if ft is None or ft.mode != "qlora":
        return 0.0
    q_numel, q_bytes, _ = _quantized(model, ft)
    return (q_bytes + 2 * q_numel) * model.num_layers


def trainable_params_local(model: ModelSpec, training: TrainingSpec, dense_local: Any,
                           expert_local: Any, model_shards: Any) -> tuple[Any, Any]:
    """(non-expert, routed-expert) trainable parameters per device before ZeRO, whose
    gradients are reduced and whose optimizer steps: all of them unless fine-tuning (LoRA
    trains no routed expert; ``model_shards`` = tp x pp)."""
    ft = training.finetune
    if ft is None or ft.mode == "full":
        return dense_local, expert_local
    return trainable_params(model, ft).trainable / model_shards, 0.0 * expert_local


def frozen_edge_activation_bytes(model: ModelSpec, training: TrainingSpec,
                                 tokens: float) -> float:
    """Bytes a recipe saves less at the model's two ends, for ``tokens`` tokens of one
    micro-batch on one device (no TP): a frozen head keeps no copy of its input (the final
    norm's output); before the first adapter nothing needs a gradient, so the first block's
    norm does not save its input (the embedding output), and when none of its q, k, v has
    an adapter its attention saves nothing (Q, K, V, softmax statistics), nor, without one on
    o either, the attention output and the second norm's input."""
    ft = training.finetune
    if ft is None or ft.mode == "full":
        return 0.0
    from planner.estimators.memory import activation_bytes_per_element

    beta = activation_bytes_per_element(training.precision)
    h = model.d_model
    targets = set(resolve_targets(model, ft.lora_targets)) if ft.uses_lora else set()
    saved = 0.0
    if "lm_head" not in targets and not ft.train_lm_head:
        saved += h * beta
    elif "lm_head" in targets and ft.lora_dropout > 0:  # the head adapter's dropped copy
        saved -= h  # replaces the final norm's output it kept; its 1-byte mask is extra
    if ft.uses_lora and not ft.train_embeddings and "embed_tokens" not in targets and \
            not model.mla and not model.parallel_block:
        saved += h * beta  # the first norm's input
        if not targets & {"q_proj", "k_proj", "v_proj"}:  # attention records nothing
            a, g, d = model.num_heads, model.kv_heads, model.d_head
            width = a * d + 2 * g * d  # Q, K, V (the norm output: finetune_widths)
            if model.qk_norm != "none":
                width += a * d + g * d
            if "o_proj" not in targets:  # nor does o, nor the second norm, and the FFN
                width += a * d + h + _first_ffn_unsaved(model, targets)
            elif ft.lora_dropout > 0:  # o's adapter keeps its dropped copy, not the output
                width += a * d
            saved += width * beta + 4 * a
        saved += _first_block_masks(model, ft, targets)  # 1 byte each
    return saved * tokens


def _first_block_masks(model: ModelSpec, ft: FinetuneSpec, targets: set[str]) -> float:
    """Bytes per token of lora_dropout masks the first block does not save: a dropout whose
    input needs no gradient records nothing (its dropped copy stays: lora_A saves it). In
    forward order q,k,v -> o -> gate,up -> down, an adapter's input needs a gradient once an
    adapter upstream of it in the block has run."""
    if not ft.lora_dropout > 0:
        return 0.0
    h, moe = model.d_model, model.layer_is_moe()[0]
    width = (model.moe.shared_width if moe else model.ffn_hidden_size) or 0
    groups = [({"q_proj", "k_proj", "v_proj"}, h), ({"o_proj"}, model.num_heads * model.d_head),
              ({"gate_proj", "up_proj"}, h if width else 0), ({"down_proj"}, width)]
    for names, width_in in groups:
        hit = targets & names
        if hit and width_in:  # the first group with adapters; every later input has a grad
            return float(width_in * len(hit))
    return 0.0


def _first_ffn_unsaved(model: ModelSpec, targets: set[str]) -> int:
    """Elements per token the first block's dense FFN does not save when its input needs no
    gradient: only the products whose other factor has an adapter upstream are kept (gated:
    act(gate) * up keeps act(gate) for up's gradient, gate and up for gate's)."""
    if model.layer_is_moe()[0]:
        return 0
    f = model.ffn_hidden_size
    gate, up = "gate_proj" in targets, "up_proj" in targets
    if model.ffn_type != "gated":
        return 0 if up else f  # up's output (act's is down's input: finetune_widths)
    if gate and up:
        return 0
    return f if gate else (2 * f if up else 3 * f)
