"""Packed encoder layers (packing.py): the same logits and gradients as padded layers, only where a
probe shows it, and CPU trials train with them."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from ablation import cli, cpu_dropout
from ablation.cpu_dropout import use_uniform_dropout
from ablation.packing import Packing, pack_encoder

SIZES = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64, "num_labels": 3}
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def tiny(kind: str = "bert", **overrides) -> torch.nn.Module:
    """A tiny random model with ablate's CPU attention, as CPU trials build theirs."""
    torch.manual_seed(0)
    config_class, model_class = {"bert": (BertConfig, BertForSequenceClassification),
                                 "roberta": (RobertaConfig, RobertaForSequenceClassification)}[kind]
    model = model_class(config_class(**SIZES | overrides))
    use_uniform_dropout(model)
    return model


def padded_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(4, 10, dtype=torch.long)
    mask[0, 6:] = 0
    mask[2, 3:] = 0
    return {"input_ids": torch.randint(3, 100, (4, 10), generator=generator), "attention_mask": mask,
            "labels": torch.tensor([0, 1, 2, 1])}


def test_packing_keeps_the_real_tokens_in_order_and_unpacks_them_with_zeros_at_padding():
    real = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    additive = torch.zeros(3, 1, 4, 4).masked_fill(~real[:, None, None, :], torch.finfo(torch.float32).min)
    packing = Packing.of(additive)
    hidden = torch.arange(3 * 4 * 2, dtype=torch.float32).view(3, 4, 2)
    packed = packing.pack(hidden)
    assert packed.shape == (1, 8, 2)
    assert torch.equal(packed[0], hidden[real])
    unpacked = packing.unpack(packed)
    assert torch.equal(unpacked[real], hidden[real])
    assert torch.all(unpacked[~real] == 0)
    assert Packing.of(torch.zeros(3, 1, 4, 4)) is None  # no padding: nothing to remove
    assert Packing.of(real[:, None, None, :].expand(3, 1, 4, 4)) is None  # a bool mask: not ours


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_a_packed_model_computes_the_same_logits_loss_and_gradients(kind: str):
    stock, packed = tiny(kind, **NO_DROPOUT), tiny(kind, **NO_DROPOUT)
    assert pack_encoder(packed)
    assert type(packed.base_model.encoder).__name__.startswith("Packed")
    outputs = []
    for model in (stock, packed):
        model.train()
        out = model(**padded_batch())
        out.loss.backward()
        outputs.append(out)
    assert torch.allclose(outputs[0].logits, outputs[1].logits, atol=1e-6)
    assert outputs[0].loss.item() == pytest.approx(outputs[1].loss.item(), abs=1e-6)
    for (name, a), b in zip(stock.named_parameters(), packed.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_with_dropout_a_packed_model_trains_and_evaluates_as_the_stock_one():
    stock, packed = tiny(), tiny()
    assert pack_encoder(packed)
    packed.train()
    loss = packed(**padded_batch()).loss
    loss.backward()
    assert torch.isfinite(loss) and packed.classifier.weight.grad.abs().sum() > 0
    stock.eval()
    packed.eval()
    with torch.no_grad():
        assert torch.allclose(stock(**padded_batch()).logits, packed(**padded_batch()).logits, atol=1e-6)


def _attention_dropout_alone(monkeypatch, **call) -> tuple[list, list, list[torch.nn.Module]]:
    """A stock and a packed model with attention dropout only, one training step each from the same
    seed; the calls of the packed attention Function, the outputs and the models."""
    calls = []
    attend = cpu_dropout._attend_packed
    monkeypatch.setattr(cpu_dropout, "_attend_packed", lambda *args: calls.append(1) or attend(*args))
    rates = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.3}
    models = [tiny(**rates), tiny(**rates)]
    assert pack_encoder(models[1])
    outputs = []
    for model in models:
        model.train()
        torch.manual_seed(5)
        out = model(**padded_batch(), **call)
        out.loss.backward()
        outputs.append(out)
    return calls, outputs, models


def test_with_attention_dropout_alone_packed_layers_draw_the_padded_masks(monkeypatch):
    """Packed attention while training (cpu_dropout's own forward and backward, in two groups of
    lengths) draws the padded path's masks: the same seed gives the padded model's logits, loss
    and gradients."""
    calls, outputs, (stock, packed) = _attention_dropout_alone(monkeypatch)
    assert len(calls) == 2  # both layers of the packed model, none of the stock one
    assert torch.allclose(outputs[0].logits, outputs[1].logits, atol=1e-6)
    assert outputs[0].loss.item() == pytest.approx(outputs[1].loss.item(), abs=1e-6)
    for (name, a), b in zip(stock.named_parameters(), packed.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_recorded_attention_weights_are_the_padded_ones(monkeypatch):
    """``output_attentions=True`` while training: the packed model attends in one padded batch
    (``Packing.attend``), whose weights it returns."""
    calls, outputs, _ = _attention_dropout_alone(monkeypatch, output_attentions=True)
    assert not calls
    assert torch.allclose(outputs[0].logits, outputs[1].logits, atol=1e-6)
    real = padded_batch()["attention_mask"].bool()  # padding's query rows: nothing reads them
    for a, b in zip(outputs[0].attentions, outputs[1].attentions, strict=True):
        assert a.shape == b.shape == (4, 2, 10, 10)
        assert torch.allclose(a.transpose(1, 2)[real], b.transpose(1, 2)[real], atol=1e-6)


def test_attention_groups_split_the_batch_by_length_at_the_least_area():
    lengths = [9, 2, 10, 3, 3, 8]
    real = torch.arange(10)[None, :] < torch.tensor(lengths)[:, None]
    mask = torch.zeros(6, 1, 10, 10).masked_fill(~real[:, None, None, :], torch.finfo(torch.float32).min)
    packing = Packing.of(mask)
    short, long = packing.attention_groups(heads=2)
    assert sorted(short.members.tolist()) == [1, 3, 4] and short.length == 3  # 3 × 3² + 3 × 10²
    assert sorted(long.members.tolist()) == [0, 2, 5] and long.length == 10
    tokens = torch.cat([short.tokens, long.tokens]).sort().values
    assert torch.equal(tokens, torch.arange(sum(lengths) * 2))  # every packed row once
    packed = torch.arange(sum(lengths) * 2, dtype=torch.float32)[:, None].expand(-1, 4).contiguous()
    back = torch.empty_like(packed)
    for group in (short, long):
        padded = group.pad(packed, heads=2)
        assert padded.shape == (group.members.numel() * 2, group.length, 4)
        group.unpad(padded, back)
    assert torch.equal(back, packed)
    assert packing.attention_groups(heads=2) is packing.attention_groups(heads=2)  # one split a batch
    similar = torch.arange(10)[None, :] < torch.tensor([10, 9, 10, 8])[:, None]
    mask = torch.zeros(4, 1, 10, 10).masked_fill(~similar[:, None, None, :], torch.finfo(torch.float32).min)
    (whole,) = Packing.of(mask).attention_groups(heads=2)  # a split would leave 0.91 of the area
    assert sorted(whole.members.tolist()) == [0, 1, 2, 3] and whole.length == 10


def test_packed_attentions_backward_is_the_gradient_of_its_forward():
    """Checked numerically in float64 (no element dropped, so that every call draws alike)."""
    real = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    mask = torch.zeros(3, 1, 5, 5, dtype=torch.float64).masked_fill(~real[:, None, None, :], -1e9)
    packing = Packing.of(mask)
    tokens, heads, size = int(real.sum()), 2, 4
    groups = packing.attention_groups(heads)
    assert len(groups) == 2
    inputs = [torch.randn(tokens, heads, size, dtype=torch.float64, requires_grad=True) for _ in range(3)]

    def attend(query, key, value):
        return cpu_dropout._PackedDropoutAttention.apply(query, key, value, groups, 3, 5, 0.5, 1e-9)

    assert torch.autograd.gradcheck(attend, inputs)


@pytest.mark.parametrize("site", ["hidden", "attention"])
def test_under_dropout_packed_and_padded_layers_draw_alike(site: str):
    """Dropout draws another stream once packed (one number per real token); what training sees
    must keep its distribution: over many draws, the logits' mean and spread agree. (Weights drawn
    wide, so that attention is peaked and each dropout site moves the logits.)"""
    rates = {"hidden_dropout_prob": 0.3 if site == "hidden" else 0.0,
             "attention_probs_dropout_prob": 0.3 if site == "attention" else 0.0, "initializer_range": 0.5}
    stock, packed = tiny(**rates), tiny(**rates)
    assert pack_encoder(packed)
    draws = 300
    logits = []
    for model in (stock, packed):
        model.train()
        torch.manual_seed(0)
        with torch.no_grad():
            logits.append(torch.stack([model(**padded_batch()).logits for _ in range(draws)]))
    (mean_a, mean_b), (std_a, std_b) = ([x.mean(0) for x in logits], [x.std(0) for x in logits])
    assert std_a.mean() > 0.1  # this site's dropout does move the logits
    assert torch.all((mean_a - mean_b).abs() < 5 * (std_a ** 2 + std_b ** 2).sqrt() / draws ** 0.5)
    assert std_b.mean() / std_a.mean() == pytest.approx(1.0, abs=0.1)


def test_a_batch_without_padding_and_a_copy_of_the_model_take_the_right_path():
    packed = tiny()
    assert pack_encoder(packed)
    assert not pack_encoder(packed)  # already packed
    copied = copy.deepcopy(packed)
    full = {"input_ids": torch.randint(3, 100, (2, 5)), "attention_mask": torch.ones(2, 5, dtype=torch.long)}
    packed.eval()
    copied.eval()
    with torch.no_grad():
        assert torch.equal(packed(**full).logits, copied(**full).logits)
        copied.classifier.weight.add_(1.0)  # the copy runs its own weights, not the original's
        assert not torch.allclose(packed(**padded_batch()).logits, copied(**padded_batch()).logits)


def test_models_the_probe_cannot_confirm_keep_their_padded_encoder():
    stock_attention = BertForSequenceClassification(BertConfig(**SIZES))  # SDPA: knows no packing
    assert not pack_encoder(stock_attention)
    assert type(stock_attention.bert.encoder).__name__ == "BertEncoder"
    relative = tiny(position_embedding_type="relative_key")
    assert not pack_encoder(relative)
    distil = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, num_labels=3))
    use_uniform_dropout(distil)
    assert not pack_encoder(distil)  # no `encoder.layer`: left as it is
    model = tiny()
    model.train()
    assert pack_encoder(model) and model.training  # the probe restores the mode


def test_an_encoder_whose_packed_logits_differ_is_put_back(monkeypatch):
    def across_sequences(self, attention, module, query, key, value, **kwargs):
        return attention(module, query, key, value, None, **kwargs)  # forgets the batch's shape

    monkeypatch.setattr(Packing, "attend", across_sequences)
    model = tiny()
    assert not pack_encoder(model)
    assert type(model.bert.encoder).__name__ == "BertEncoder"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_trials_on_cpu_train_with_packed_encoders_and_kept_embedding_gradients(write_experiment, watch_train,
                                                                              precision):
    packed, kept = watch_train("pack_encoder"), watch_train("keep_embedding_gradient")
    path = write_experiment()
    assert cli.main(["run", str(path), "--set", f'baseline.precision="{precision}"']) == 0
    assert packed == kept == [True, True]  # both trials (two seeds)


def test_under_cpu_bf16_autocast_a_packed_model_trains_and_matches_the_padded_one():
    stock, packed = tiny(**NO_DROPOUT), tiny(**NO_DROPOUT)
    assert pack_encoder(packed)
    outputs = []
    for model in (stock, packed):
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**padded_batch())
        out.loss.backward()
        outputs.append(out)
    assert torch.isfinite(outputs[1].loss) and packed.classifier.weight.grad.abs().sum() > 0
    assert torch.allclose(outputs[0].logits.float(), outputs[1].logits.float(), atol=2e-2)
