"""CPU dropout from uniform draws (cpu_dropout.py): torch's dropout distribution and gradients, the
same model outside training, and CPU trials train with it."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from ablation import cli, cpu_dropout, train
from ablation.cpu_dropout import (
    ATTENTION,
    UniformDropout,
    attention,
    dropout,
    keep_mask,
    use_uniform_dropout,
)


def tiny_bert(seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3, **overrides))


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(4, 10, dtype=torch.long)
    mask[0, 6:] = 0  # a padded row: the attention mask must still apply
    return {"input_ids": torch.randint(0, 100, (4, 10), generator=generator), "attention_mask": mask}


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_each_element_is_kept_with_probability_1_minus_p_and_scaled_as_torch_scales(p: float):
    torch.manual_seed(0)
    x = torch.ones(200_000)
    out = dropout(x, p)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / x.numel()) ** 0.5  # five standard errors
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)))
    reference = torch.nn.functional.dropout(x, p)  # torch's own: the same two values
    assert set(reference.unique().tolist()) == set(out.unique().tolist())


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_mask_keeps_every_element_position_with_probability_1_minus_p(p: float):
    # Four elements share each 63-bit draw; the top word has a bit less, so each of the four
    # positions must keep at the same rate (masking to 15 bits), and the rate is p to 2**-15.
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([4, 100_000]), p)
    assert keep.dtype == torch.bool and keep.shape == (4, 100_000)
    by_position = keep.view(-1, 4).float().mean(dim=0)
    tolerance = 5 * (p * (1 - p) / 100_000) ** 0.5  # five standard errors
    assert torch.all((by_position - (1 - p)).abs() < tolerance), by_position
    assert abs(round(p * 2**15) / 2**15 - p) <= 2**-16


def test_a_mask_of_any_length_is_drawn():
    for count in (1, 3, 4, 5, 1023):
        assert keep_mask(torch.Size([count]), 0.0).all()  # p = 0 keeps everything
        assert not keep_mask(torch.Size([count, 1]), 1.0).any()


def test_a_seed_gives_the_same_mask_and_no_training_or_p_0_changes_nothing():
    x = torch.randn(1000)
    torch.manual_seed(3)
    first = dropout(x, 0.2)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.2))
    assert not torch.equal(first, dropout(x, 0.2))  # the generator moved on
    assert dropout(x, 0.2, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))


def test_the_gradient_is_the_same_mask_scaled():
    x = torch.randn(5000, dtype=torch.float64).abs().add_(0.1).requires_grad_()
    out = dropout(x, 0.3)
    out.backward(torch.ones_like(out))
    kept = out.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.7))
    assert torch.all(x.grad[~kept] == 0)
    assert torch.autograd.gradcheck(lambda t: dropout(t, 0.0), (x[:5].detach().requires_grad_(),))


def test_the_dtype_is_kept_under_bf16():
    x = torch.randn(64, 8, dtype=torch.bfloat16, requires_grad=True)
    out = dropout(x, 0.1)
    out.sum().backward()
    assert out.dtype == x.grad.dtype == torch.bfloat16


def test_a_swapped_model_evaluates_exactly_as_before_and_saves_the_same_config(tmp_path):
    stock, swapped = tiny_bert(), tiny_bert()
    stock.eval()
    swapped.eval()
    assert use_uniform_dropout(swapped) == 8  # embeddings, 3 per layer, the classifier's
    assert not any(type(m) is torch.nn.Dropout for m in swapped.modules())
    assert all(not m.training for m in swapped.modules())  # the new modules keep the mode
    assert swapped.config._attn_implementation == ATTENTION
    with torch.no_grad():
        assert torch.equal(stock(**batch()).logits, swapped(**batch()).logits)
    swapped.save_pretrained(tmp_path)
    assert ATTENTION not in json.loads((tmp_path / "config.json").read_text()).values()


def test_without_dropout_a_swapped_model_trains_exactly_as_before():
    overrides = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    stock, swapped = tiny_bert(**overrides), tiny_bert(**overrides)
    use_uniform_dropout(swapped)
    labels = torch.tensor([0, 1, 2, 0])
    losses = []
    for model in (stock, swapped):
        model.train()
        loss = model(**batch(), labels=labels).loss
        loss.backward()
        losses.append((loss.item(), model.classifier.weight.grad.clone()))
    assert losses[0][0] == pytest.approx(losses[1][0], abs=1e-6)
    assert torch.allclose(losses[0][1], losses[1][1], atol=1e-6)


def test_attention_drops_its_weights_at_rate_p_while_training():
    torch.manual_seed(0)
    query, key, value = (torch.randn(8, 2, 12, 16) for _ in range(3))
    module = torch.nn.Module()
    module.is_causal = False  # an encoder's attention, as BERT's
    _, weights = attention(module, query, key, value, None, dropout=0.5)
    softmax = torch.softmax(query @ key.transpose(2, 3) * 16 ** -0.5, dim=-1)
    kept = weights != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.05
    assert torch.allclose(weights[kept], 2 * softmax[kept], atol=1e-6)
    no_dropout, _ = attention(module, query, key, value, None, dropout=0.0)  # SDPA
    expected = (softmax @ value).transpose(1, 2)
    assert torch.allclose(no_dropout, expected, atol=1e-5)


def test_trials_on_cpu_train_with_uniform_dropout(write_experiment, monkeypatch):
    swapped: list[int] = []
    modules: list[type] = []
    real = cpu_dropout.use_uniform_dropout

    def watched(model):
        swapped.append(real(model))
        modules.extend(type(m) for m in model.modules() if isinstance(m, torch.nn.Dropout))
        return swapped[-1]

    monkeypatch.setattr(train, "use_uniform_dropout", watched)
    assert cli.main(["run", str(write_experiment())]) == 0
    assert len(swapped) == 2 and min(swapped) > 0  # both trials (two seeds), every dropout module
    assert set(modules) == {UniformDropout}


def test_grouped_query_attention_with_dropout_trains_as_the_models_own_attention():
    """Llama 3, Qwen2, Mistral and Gemma share each key and value head between a group of query
    heads: with attention dropout (a `dropout` variant sets Llama's attention_dropout), ablate's
    attention multiplied 4 query heads by 2 key heads and every CPU trial failed at its first step
    (`The size of tensor a (4) must match the size of tensor b (2)`). With a dropout so small that
    no mask drops anything, it gives the model's own logits and gradients."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, num_labels=3, pad_token_id=0,
                         attention_dropout=1e-9)  # below 2⁻¹⁵: no element is dropped
    torch.manual_seed(0)
    stock = LlamaForSequenceClassification(config)
    swapped = LlamaForSequenceClassification(config)
    swapped.load_state_dict(stock.state_dict())
    use_uniform_dropout(swapped)
    assert swapped.config._attn_implementation == ATTENTION
    labels = torch.tensor([0, 1, 2, 0])
    outputs = []
    for model in (stock, swapped):
        model.train()
        out = model(**batch(), labels=labels)
        out.loss.backward()
        outputs.append(out)
    assert torch.allclose(outputs[0].logits, outputs[1].logits, atol=1e-6)
    for (name, a), b in zip(stock.named_parameters(), swapped.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def _soft_capped_gemma2():
    from transformers import Gemma2Config, Gemma2ForSequenceClassification

    return Gemma2ForSequenceClassification(Gemma2Config(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, intermediate_size=64, num_labels=3, pad_token_id=0, attention_dropout=1e-9,
        attn_logit_softcapping=0.05, sliding_window=4))


def _t5_with_position_bias():
    from transformers import T5Config, T5ForSequenceClassification

    return T5ForSequenceClassification(T5Config(
        vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, num_labels=3,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, dropout_rate=1e-9))


@pytest.mark.parametrize("build", [_soft_capped_gemma2, _t5_with_position_bias], ids=["gemma2", "t5"])
def test_attention_maths_beyond_softmax_qk_v_stays_the_models_own(build):
    """Gemma 2 soft-caps its attention logits and T5 adds a relative position bias: ablate's CPU
    attention left both out while training (T5 trained without its position bias and was evaluated
    with it) and handed the soft cap to SDPA outside training, which raises (every Gemma 2 trial
    failed at its first evaluation). Those calls now go to the model's own attention: with a
    dropout that drops nothing, the same logits as the stock model, training and evaluating."""
    torch.manual_seed(0)
    stock = build()
    swapped = build()
    swapped.load_state_dict(stock.state_dict())
    use_uniform_dropout(swapped)
    assert swapped.config._attn_implementation == ATTENTION
    input_ids = torch.randint(3, 100, (3, 9), generator=torch.Generator().manual_seed(1))
    input_ids[:, -1] = 1  # T5's classifier reads each text's end-of-sequence token
    for training in (True, False):
        logits = []
        for model in (stock, swapped):
            model.train(training)
            with torch.set_grad_enabled(training):
                logits.append(model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits)
        assert torch.allclose(logits[0], logits[1], atol=1e-5), training
