"""A real torch.nn.Module from a ModelSpec, with exactly count_params(spec) parameters.

Decoder-only blocks: MHA/GQA/MQA or DeepSeek MLA attention through
F.scaled_dot_product_attention (GQA without repeating K/V, `enable_gqa=True`), gated or
plain MLP, RMSNorm or LayerNorm, optional biases and QK-norm, learned or rotary positions,
tied or untied head, and MoE with top-k routing and shared experts. Norms save only their
input (like fused kernels), so what autograd keeps matches estimators.memory.
Pre-norm placement throughout (OLMo-2's post-norm has the same parameters, FLOPs and saved
bytes).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from planner.specs.model import ModelSpec

_ACT = {"silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "relu": F.relu}


def _acc(t: torch.Tensor) -> torch.Tensor:
    """Accumulate half-precision tensors in fp32; keep fp32/fp64 as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class _RMSNormFn(torch.autograd.Function):
    """y = x / rms(x) * w, saving x and the per-token 1/rms (as a fused kernel does)."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        rstd = torch.rsqrt(_acc(x).pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        return (_acc(x) * rstd).to(x.dtype) * weight

    @staticmethod
    def backward(ctx, grad):
        x, weight, rstd = ctx.saved_tensors
        xhat = _acc(x) * rstd
        g = _acc(grad) * _acc(weight)
        dx = rstd * (g - xhat * (g * xhat).mean(-1, keepdim=True))
        dw = (_acc(grad) * xhat).reshape(-1, x.shape[-1]).sum(0)
        return dx.to(x.dtype), dw.to(weight.dtype), None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x):
        return _RMSNormFn.apply(x, self.weight, self.eps)


def make_norm(spec: ModelSpec, dim: int) -> nn.Module:
    if spec.norm_type == "layernorm":
        return nn.LayerNorm(dim, bias=spec.norm_bias)
    return RMSNorm(dim)


def _cos_sin(s: int, d: int, dtype, device, base: float = 10000.0):
    inv = 1.0 / base ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d)
    ang = torch.arange(s, device=device, dtype=torch.float32)[:, None] * inv[None]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None].to(dtype)
    sin = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None].to(dtype)
    return cos, sin


class _RopeFn(torch.autograd.Function):
    """Rotary embedding that saves nothing: it is linear, so backward rotates the gradient
    the other way (as fused RoPE kernels do)."""

    @staticmethod
    def forward(ctx, x):
        cos, sin = _cos_sin(x.shape[1], x.shape[-1], x.dtype, x.device)
        h = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin

    @staticmethod
    def backward(ctx, g):
        cos, sin = _cos_sin(g.shape[1], g.shape[-1], g.dtype, g.device)
        h = g.shape[-1] // 2
        return g * cos + torch.cat([g[..., h:], -g[..., :h]], -1) * sin


def rope(x: torch.Tensor) -> torch.Tensor:
    """Rotary embedding over the last dim of x [b, s, heads, d]."""
    return _RopeFn.apply(x)


# A plain module global, not a ContextVar: torch.compile guards on a global bool, but
# cannot trace ContextVar.get (a graph break in every attention layer).
_EXPAND_KV = False


@contextlib.contextmanager
def expanded_kv():
    """Within this block GQA attention repeats K/V to every query head before SDPA (same
    FLOPs): torch's FlopCounterMode formulas for the fused GPU kernels reject K/V with
    fewer heads than Q. For counting only (not thread-safe; validate is single-threaded)."""
    global _EXPAND_KV
    before, _EXPAND_KV = _EXPAND_KV, True
    try:
        yield
    finally:
        _EXPAND_KV = before


def attend(q, k, v, gqa: bool) -> torch.Tensor:
    """Causal SDPA on [b, s, heads, d] tensors; returns [b, s, heads * d_v] (a view)."""
    if gqa and _EXPAND_KV:
        rep = q.shape[2] // k.shape[2]
        k, v, gqa = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2), False
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                         v.transpose(1, 2), is_causal=True, enable_gqa=gqa)
    b, a, s, dv = out.shape
    return out.transpose(1, 2).reshape(b, s, a * dv)


class Attention(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        h, a, g, d = spec.d_model, spec.num_heads, spec.kv_heads, spec.d_head
        self.a, self.g, self.d, self.rope = a, g, d, spec.position_embedding == "rope"
        self.q = nn.Linear(h, a * d, bias=spec.qkv_bias)
        self.k = nn.Linear(h, g * d, bias=spec.qkv_bias)
        self.v = nn.Linear(h, g * d, bias=spec.qkv_bias)
        self.o = nn.Linear(a * d, h, bias=spec.attn_out_bias)
        self.qn = self.kn = None
        if spec.qk_norm == "per_head":
            self.qn, self.kn = RMSNorm(d), RMSNorm(d)
        elif spec.qk_norm == "full":
            self.qn, self.kn = RMSNorm(a * d), RMSNorm(g * d)
        self.full_qk_norm = spec.qk_norm == "full"

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.qn is not None and self.full_qk_norm:
            q, k = self.qn(q), self.kn(k)
        q, k, v = (t.view(b, s, n, self.d) for t, n in ((q, self.a), (k, self.g), (v, self.g)))
        if self.qn is not None and not self.full_qk_norm:
            q, k = self.qn(q), self.kn(k)
        if self.rope:
            q, k = rope(q), rope(k)
        return self.o(attend(q, k, v, self.g != self.a))


class MLAttention(nn.Module):
    """DeepSeek multi-head latent attention (V2/V3 inference/model.py, naive form)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        m, h, a = spec.mla, spec.d_model, spec.num_heads
        self.m, self.a = m, a
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            self.q_a = nn.Linear(h, m.q_lora_rank, bias=False)
            self.q_norm = RMSNorm(m.q_lora_rank)
            self.q_b = nn.Linear(m.q_lora_rank, a * qk, bias=False)
        else:
            self.q = nn.Linear(h, a * qk, bias=False)
        self.kv_a = nn.Linear(h, m.kv_lora_rank + m.qk_rope_head_dim, bias=False)
        self.kv_norm = RMSNorm(m.kv_lora_rank)
        self.kv_b = nn.Linear(m.kv_lora_rank, a * (m.qk_nope_head_dim + m.v_head_dim),
                              bias=False)
        self.o = nn.Linear(a * m.v_head_dim, h, bias=False)

    def forward(self, x):
        b, s, _ = x.shape
        m, a = self.m, self.a
        q = self.q_b(self.q_norm(self.q_a(x))) if m.q_lora_rank else self.q(x)
        q = q.view(b, s, a, -1)
        q = torch.cat([q[..., : m.qk_nope_head_dim], rope(q[..., m.qk_nope_head_dim:])], -1)
        kv = self.kv_a(x)
        k_pe = rope(kv[..., m.kv_lora_rank:].unsqueeze(2))
        kv = self.kv_b(self.kv_norm(kv[..., : m.kv_lora_rank])).view(b, s, a, -1)
        k = torch.cat([kv[..., : m.qk_nope_head_dim],
                       k_pe.expand(b, s, a, m.qk_rope_head_dim)], -1)
        v = kv[..., m.qk_nope_head_dim:].contiguous()
        return self.o(attend(q, k, v, False))


class MLP(nn.Module):
    def __init__(self, spec: ModelSpec, width: int):
        super().__init__()
        h, bias = spec.d_model, spec.mlp_bias
        self.gated, self.act = spec.ffn_type == "gated", _ACT[spec.activation]
        self.up = nn.Linear(h, width, bias=bias)
        self.gate = nn.Linear(h, width, bias=bias) if self.gated else None
        self.down = nn.Linear(width, h, bias=bias)

    def forward(self, x):
        if self.gated:
            return self.down(self.act(self.gate(x)) * self.up(x))
        return self.down(self.act(self.up(x)))


class MoE(nn.Module):
    """Top-k routed experts (softmax router, renormalised weights) + shared experts."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        e = spec.moe
        self.k = e.experts_per_token
        self.router = nn.Linear(spec.d_model, e.num_experts, bias=False)
        # DeepSeek-V3's score-correction bias steers selection only (no gradient path).
        self.bias = nn.Parameter(torch.zeros(e.num_experts)) if e.router_bias else None
        self.experts = nn.ModuleList(MLP(spec, e.expert_ffn_hidden_size)
                                     for _ in range(e.num_experts))
        self.shared = MLP(spec, e.shared_width) if e.shared_width else None

    def forward(self, x):
        b, s, h = x.shape
        flat = x.reshape(-1, h)
        probs = F.softmax(self.router(flat).float(), dim=-1)
        score = probs if self.bias is None else probs + self.bias.detach()
        idx = score.topk(self.k, dim=-1).indices
        w = probs.gather(-1, idx)
        w = (w / w.sum(-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel():
                # index_put_ keeps only the indices for backward (index_add saves its source)
                out.index_put_((tok,), expert(flat[tok]) * w[tok, slot, None], accumulate=True)
        out = out.view(b, s, h)
        return out + self.shared(x) if self.shared is not None else out


class Block(nn.Module):
    def __init__(self, spec: ModelSpec, moe: bool):
        super().__init__()
        self.parallel = spec.parallel_block
        self.post = spec.norms_per_layer == 4  # Gemma-2: norms before and after each part
        self.attn = MLAttention(spec) if spec.mla else Attention(spec)
        self.mlp = MoE(spec) if moe else MLP(spec, spec.ffn_hidden_size)
        n = spec.norms_per_layer
        self.norms = nn.ModuleList(make_norm(spec, spec.d_model) for _ in range(n))

    def forward(self, x):
        n = self.norms
        if self.parallel:
            a_in = n[0](x)
            return x + self.attn(a_in) + self.mlp(n[1](x) if len(n) > 1 else a_in)
        if self.post:
            x = x + n[1](self.attn(n[0](x)))
            return x + n[3](self.mlp(n[2](x)))
        x = x + self.attn(n[0](x))
        return x + self.mlp(n[1](x))


class DecoderLM(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        h, V = spec.d_model, spec.vocab_size
        self.embed = nn.Embedding(V, h)
        self.pos = nn.Embedding(spec.max_seq_len, h) \
            if spec.position_embedding == "learned" else None
        self.blocks = nn.ModuleList(Block(spec, moe=moe) for moe in spec.layer_is_moe())
        self.norm = make_norm(spec, h)
        self.head = None if spec.tie_embeddings else nn.Linear(h, V, bias=spec.lm_head_bias)
        self.head_bias = nn.Parameter(torch.zeros(V)) \
            if spec.tie_embeddings and spec.lm_head_bias else None
        self._init()

    def _init(self) -> None:
        std = 0.02
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)) and m.weight.device.type != "meta":
                nn.init.normal_(m.weight, std=std / math.sqrt(2) if m is not self.embed else std)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.head is not None:
            logits = self.head(x)
        else:
            logits = F.linear(x, self.embed.weight, self.head_bias)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def build_model(spec: ModelSpec, device: str = "cpu", dtype=None) -> DecoderLM:
    """The model on a device ('meta' allocates nothing: for counting full-size presets)."""
    with torch.device(device):
        model = DecoderLM(spec)
    return model.to(dtype=dtype) if dtype is not None else model
