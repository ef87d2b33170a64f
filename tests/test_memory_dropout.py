"""Dropout's saved masks against Korthikanti et al. 2022 (arXiv:2205.05198) Table 2.

The paper's GPT layer (MHA, f = 4h, LayerNorm, GeLU, dropout, unfused attention, 16-bit
activations, 1-byte masks). Table 2, bytes per layer per micro-batch:
no parallelism sbh(34 + 5as/h); TP sbh(10 + 24/t + 5as/(ht)); TP+SP sbh/t (34 + 5as/h);
TP+SP+selective 34 sbh/t; TP+selective sbh(10 + 24/t).
The models are the paper's Table 3 (s = 2048, b = 1, t = 8).
"""

import pytest

from planner.catalog.catalog import load_model
from planner.estimators.memory import layer_activation_bytes
from planner.specs import ParallelismSpec, TrainingSpec

# Table 3: (heads a, hidden h, layers L); tensor-parallel size 8 for all four.
PAPER_MODELS = {"22B": (64, 6144, 48), "175B": (96, 12288, 96), "530B": (128, 20480, 105),
                "1T": (160, 25600, 128)}
S, B, T = 2048, 1, 8


def _gpt(a, h, layers):
    base = load_model("gpt3-175b")  # GPT layer: LayerNorm, GeLU, f = 4h, MHA
    return base.model_copy(update=dict(num_heads=a, d_model=h, num_layers=layers,
                                       ffn_hidden_size=4 * h))


def _train(recompute="none", dropout=True):
    return TrainingSpec(tokens=1e12, seq_len=S, global_batch_size=8, recompute=recompute,
                        flash_attention=False, dropout=dropout)


def _table2(a, h, setting):
    sbh, r = S * B * h, 5 * a * S / h
    return {"none": sbh * (34 + r), "tp": sbh * (10 + 24 / T + r / T),
            "tp_sp": sbh / T * (34 + r), "tp_sp_selective": 34 * sbh / T,
            "tp_selective": sbh * (10 + 24 / T)}[setting]


_LAYOUTS = {"none": (dict(devices=1), "none"),
            "tp": (dict(devices=T, tp=T, sequence_parallel=False), "none"),
            "tp_sp": (dict(devices=T, tp=T), "none"),
            "tp_sp_selective": (dict(devices=T, tp=T), "selective"),
            "tp_selective": (dict(devices=T, tp=T, sequence_parallel=False), "selective")}


@pytest.mark.parametrize("name", PAPER_MODELS)
@pytest.mark.parametrize("setting", _LAYOUTS)
def test_table2_reproduced_exactly(name, setting):
    a, h, layers = PAPER_MODELS[name]
    par, recompute = _LAYOUTS[setting]
    got = layer_activation_bytes(_gpt(a, h, layers), _train(recompute),
                                 ParallelismSpec(**par), moe_layer=False)
    assert got == pytest.approx(_table2(a, h, setting), rel=1e-12)


def test_paper_selective_savings():
    # The paper (§4.3 text): 5as/h = 80 for GPT-3 175B, so selective recompute saves 80/114 = 70%
    # of the activations; 64/98 = 65% for MT-NLG 530B.
    for name, saving in (("175B", 0.70), ("530B", 0.65)):
        a, h, layers = PAPER_MODELS[name]
        m, par = _gpt(a, h, layers), ParallelismSpec(devices=T, tp=T)
        full = layer_activation_bytes(m, _train(), par, False)
        sel = layer_activation_bytes(m, _train("selective"), par, False)
        assert 1 - sel / full == pytest.approx(saving, abs=0.005)


def test_dropout_off_is_todays_model_and_fused_attention_saves_only_two_masks():
    # Off (the default): 32 sbh + 2as^2b for this GPT layer (34 - the two 1-byte masks, and
    # the softmax output only). Fused attention with dropout keeps 2 sbh of masks and no s^2
    # term (FlashAttention regenerates the mask from the RNG state).
    a, h, layers = PAPER_MODELS["22B"]
    m, par = _gpt(a, h, layers), ParallelismSpec(devices=1)
    off = layer_activation_bytes(m, _train(dropout=False), par, False)
    assert off == S * B * h * 32 + 2 * a * S * S * B
    fused = dict(tokens=1e12, seq_len=S, global_batch_size=8, recompute="none")
    with_drop = layer_activation_bytes(m, TrainingSpec(**fused, dropout=True), par, False)
    without = layer_activation_bytes(m, TrainingSpec(**fused), par, False)
    assert with_drop - without == 2 * S * B * h


def test_first_stage_total_with_embedding_dropout():
    # Korthikanti §4.3 (Eq. 5 + the embedding dropout): with 1F1B the first stage holds
    # s b h L / t (34 + 5as/h) for its L/p layers x p micro-batches in flight, plus the input
    # embedding's dropout mask, s b h p / t with sequence parallelism. 175B, t = 8, p = 8.
    from planner.estimators.memory import MemoryDefaults, memory_per_device

    a, h, layers = PAPER_MODELS["175B"]
    bare = MemoryDefaults(runtime_overhead_bytes=0, fragmentation_fraction=0,
                          logits_bytes_per_element=0)
    r = memory_per_device(_gpt(a, h, layers), _train(), ParallelismSpec(devices=64, tp=8, pp=8),
                          80 * 2**30, bare)
    sbh = S * B * h
    assert r.stage == "first" and r.in_flight_micro_batches == 8
    assert r.activations_bytes == pytest.approx(
        sbh * layers / T * (34 + 5 * a * S / h) + sbh * 8 / T, rel=1e-12)
