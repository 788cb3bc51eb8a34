"""The word embeddings' kept gradient buffer (embedding_gradient.py): the same dense gradients and
training as torch's embedding, one buffer reused step after step, only where it is safe (CPU
trials train with it: test_packing.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from ablation import cli
from ablation.embedding_gradient import (
    KeptGradientEmbedding,
    clip_grad_norm,
    keep_embedding_gradient,
    step_reachable_rows,
)

SIZES = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64, "num_labels": 3, "hidden_dropout_prob": 0.0,
         "attention_probs_dropout_prob": 0.0}


def tiny() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**SIZES))


def batch(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (4, 10), generator=generator)
    ids[1, :4] = 7  # a token repeated within the batch: its rows are summed
    mask = torch.ones(4, 10, dtype=torch.long)
    mask[0, 6:] = 0
    ids[0, 6:] = 0  # BERT's padding id: its row gets no gradient either way
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 1])}


def test_steps_with_the_kept_buffer_match_torchs_embedding_gradients_and_weights():
    stock, kept = tiny(), tiny()
    assert keep_embedding_gradient(kept)
    assert type(kept.get_input_embeddings()) is KeptGradientEmbedding
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (stock, kept)]
    buffers = []
    for step in range(3):
        for model in (stock, kept):
            model.train()
            model.zero_grad()  # set_to_none, as the Trainer does
            model(**batch(step)).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        word = kept.get_input_embeddings().weight
        assert word.grad.layout == torch.strided  # dense, as clipping and AdamW expect
        buffers.append(word.grad.data_ptr())
        for (name, a), (_, b) in zip(stock.named_parameters(), kept.named_parameters(), strict=True):
            assert torch.allclose(a.grad, b.grad, atol=1e-6), name
        for optimizer in optimizers:
            optimizer.step()
    assert len(set(buffers)) == 1  # one buffer, reused: no fresh allocation a step
    for (name, a), (_, b) in zip(stock.named_parameters(), kept.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    assert kept.get_input_embeddings().weight.grad[0].abs().sum() == 0  # padding_idx row


def test_clipping_on_the_written_rows_matches_torchs_clipping_step_after_step():
    stock, kept = tiny(), tiny()
    keep_embedding_gradient(kept)
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (stock, kept)]
    for step in range(4):  # other tokens each step: rows written before must read as zero again
        for model in (stock, kept):
            model.train()
            model.zero_grad()
            model(**batch(step)).loss.backward()
        expected = torch.nn.utils.clip_grad_norm_(stock.parameters(), 0.1)
        assert clip_grad_norm(kept, 0.1) == pytest.approx(float(expected), rel=1e-5)
        assert expected > 0.1  # the gradients were scaled
        for (name, a), (_, b) in zip(stock.named_parameters(), kept.named_parameters(), strict=True):
            assert torch.allclose(a.grad, b.grad, atol=1e-7), name
        for optimizer in optimizers:
            optimizer.step()
    stock_grad = stock.get_input_embeddings().weight.grad
    assert torch.equal(kept.get_input_embeddings().weight.grad != 0, stock_grad != 0)


def test_after_an_accumulated_micro_batch_the_whole_buffer_is_zeroed_and_clipped():
    stock, kept = tiny(), tiny()
    keep_embedding_gradient(kept)
    for model in (stock, kept):
        model.train()
        for step in (0, 1):  # two micro-batches: the second one's rows are not known to the hook
            model(**batch(step)).loss.backward()
    assert clip_grad_norm(kept, 0.1) is None  # unknown rows: the Trainer clips as torch does
    for model in (stock, kept):
        model.zero_grad()
        model(**batch(2)).loss.backward()
    assert clip_grad_norm(kept, 0.1) == pytest.approx(
        float(torch.nn.utils.clip_grad_norm_(stock.parameters(), 0.1)), rel=1e-5)
    a, b = stock.get_input_embeddings().weight.grad, kept.get_input_embeddings().weight.grad
    assert torch.allclose(a, b, atol=1e-7)


def test_models_without_the_kept_buffer_are_clipped_by_torch():
    model = tiny()
    model(**batch(0)).loss.backward()
    assert clip_grad_norm(model, 1.0) is None


def test_cpu_trials_clip_the_written_rows(write_experiment, watch_train):
    norms = watch_train("clip_grad_norm")
    assert cli.main(["run", str(write_experiment())]) == 0
    assert norms and all(isinstance(n, torch.Tensor) and n > 0 for n in norms)


def test_gradient_accumulation_adds_the_second_batch_into_the_dense_gradient():
    stock, kept = tiny(), tiny()
    keep_embedding_gradient(kept)
    for model in (stock, kept):
        model.train()
        for step in (0, 1):  # two micro-batches, no zero_grad between
            model(**batch(step)).loss.backward()
    a, b = stock.get_input_embeddings().weight.grad, kept.get_input_embeddings().weight.grad
    assert b.layout == torch.strided and torch.allclose(a, b, atol=1e-6)


def test_evaluation_and_saved_weights_are_unchanged(tmp_path):
    stock, kept = tiny(), tiny()
    keep_embedding_gradient(kept)
    for model in (stock, kept):
        model.eval()
    with torch.no_grad():
        assert torch.equal(stock(**batch(0)).logits, kept(**batch(0)).logits)
    kept.save_pretrained(tmp_path)
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path)
    assert type(reloaded.get_input_embeddings()) is torch.nn.Embedding
    assert torch.equal(reloaded.get_input_embeddings().weight, kept.get_input_embeddings().weight)


@pytest.mark.parametrize("how", ["deepcopy", "torch.save"])
def test_a_copy_hooks_its_own_weight_once(how: str, tmp_path):
    model = tiny()
    keep_embedding_gradient(model)
    model.train()
    model(**batch(0)).loss.backward()  # the original's weight is hooked
    model(**batch(1)).loss.backward()
    assert len(model.get_input_embeddings().weight._post_accumulate_grad_hooks) == 1
    if how == "deepcopy":
        clone = copy.deepcopy(model)
    else:
        torch.save(model, tmp_path / "model.pt")
        clone = torch.load(tmp_path / "model.pt", weights_only=False)
    clone.zero_grad()
    clone(**batch(1)).loss.backward()
    assert clone.get_input_embeddings().weight.grad.layout == torch.strided


@pytest.mark.parametrize("case", ["tied", "sparse", "max_norm", "already"])
def test_embeddings_it_cannot_keep_are_left_alone(case: str):
    torch.manual_seed(0)
    if case == "tied":  # the masked-LM head shares the word embeddings' weight
        model = BertForMaskedLM(BertConfig(**SIZES))
    else:
        model = tiny()
        embedding = model.get_input_embeddings()
        if case == "sparse":
            embedding.sparse = True
        elif case == "max_norm":
            embedding.max_norm = 1.0
        else:
            keep_embedding_gradient(model)
    before = type(model.get_input_embeddings())
    assert not keep_embedding_gradient(model)
    assert type(model.get_input_embeddings()) is before



# --------------------------------------------------------------------------- AdamW over reachable rows

REACHABLE = torch.arange(0, 100, 2)  # the even token ids: the only ones `even_batch` holds


def even_batch(seed: int) -> dict[str, torch.Tensor]:
    """`batch(seed)` with even token ids only (padding 0 among them)."""
    return batch(seed) | {"input_ids": batch(seed)["input_ids"] // 2 * 2}


def train_steps(model: BertForSequenceClassification, optimizer: torch.optim.Optimizer, clip: Any,
                steps: range, micro_batches: int = 1) -> None:
    for step in steps:
        model.train()
        for micro in range(micro_batches):
            model(**even_batch(10 * step + micro)).loss.backward()
        clip(model)
        optimizer.step()
        model.zero_grad()  # set_to_none, as the Trainer does


def torch_clip(model: BertForSequenceClassification) -> None:
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)


def ablate_clip(model: BertForSequenceClassification) -> None:
    assert clip_grad_norm(model, 0.5) is not None  # the written rows are known, micro-batches or not


def reachable_model(fused: bool = False) -> tuple[BertForSequenceClassification, torch.optim.Optimizer]:
    model = tiny()
    assert keep_embedding_gradient(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0, fused=fused)
    assert step_reachable_rows(model, optimizer, REACHABLE)
    return model, optimizer


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("micro_batches", [1, 2])
def test_adamw_over_the_reachable_rows_trains_as_over_the_whole_table(fused, micro_batches):
    stock = tiny()
    stock_optimizer = torch.optim.AdamW(stock.parameters(), lr=1e-2, weight_decay=0.0, fused=fused)
    model, optimizer = reachable_model(fused)
    word = model.get_input_embeddings().weight
    compact = model.get_input_embeddings().reachable_rows.param
    assert compact.shape == (len(REACHABLE), 32) and compact.grad is None
    initial = word.detach().clone()
    train_steps(stock, stock_optimizer, torch_clip, range(3), micro_batches)
    train_steps(model, optimizer, ablate_clip, range(3), micro_batches)
    for (name, a), (_, b) in zip(stock.named_parameters(), model.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name  # keys' biases: AdamW steps on rounding noise
    assert word.grad is None and compact.grad is None  # the next step starts a new gradient
    assert not optimizer.state.get(word)  # the table itself is not stepped
    for moment in ("exp_avg", "exp_avg_sq"):
        whole = stock_optimizer.state[stock.get_input_embeddings().weight][moment]
        assert torch.allclose(optimizer.state[compact][moment], whole[REACHABLE], atol=1e-7)
    odd = torch.arange(1, 100, 2)  # rows no batch reaches: unchanged both ways
    assert torch.equal(word[odd], initial[odd])
    assert torch.equal(stock.get_input_embeddings().weight[odd], initial[odd])
    assert not torch.equal(word[REACHABLE], initial[REACHABLE])


def test_reachable_rows_resume_from_a_whole_table_or_their_own_optimizer_state():
    stock = tiny()
    stock_optimizer = torch.optim.AdamW(stock.parameters(), lr=1e-2, weight_decay=0.0)
    train_steps(stock, stock_optimizer, torch_clip, range(2))
    for saved_by in ("whole table", "reachable rows"):
        model, optimizer = reachable_model()
        if saved_by == "whole table":  # a checkpoint of the same trial written before this change
            model.load_state_dict(stock.state_dict())
            optimizer.load_state_dict(copy.deepcopy(stock_optimizer.state_dict()))  # as from disk
        else:
            train_steps(model, optimizer, ablate_clip, range(2))
            state = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
            model, optimizer = reachable_model()
            model.load_state_dict(state[0])  # after the optimizer was made: read before its step
            optimizer.load_state_dict(state[1])
        continued = copy.deepcopy(stock)
        continued_optimizer = torch.optim.AdamW(continued.parameters(), lr=1e-2, weight_decay=0.0)
        continued_optimizer.load_state_dict(copy.deepcopy(stock_optimizer.state_dict()))
        train_steps(continued, continued_optimizer, torch_clip, range(2, 4))
        train_steps(model, optimizer, ablate_clip, range(2, 4))
        for (name, a), (_, b) in zip(continued.named_parameters(), model.named_parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-5), (saved_by, name)


def test_reachable_rows_only_where_the_training_is_the_same():
    model = tiny()
    keep_embedding_gradient(model)
    decaying = torch.optim.AdamW(model.parameters(), lr=1e-2)  # torch's default weight decay 0.01
    assert not step_reachable_rows(model, decaying, REACHABLE)
    assert not step_reachable_rows(model, torch.optim.SGD(model.parameters(), lr=0.1), REACHABLE)
    every = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    assert not step_reachable_rows(model, every, torch.arange(100))  # every row: nothing to skip
    assert not step_reachable_rows(model, every, torch.tensor([3, 100]))  # outside the vocabulary
    plain = tiny()  # no kept gradient: torch's dense embedding gradient
    assert not step_reachable_rows(plain, torch.optim.AdamW(plain.parameters(), weight_decay=0.0), REACHABLE)
    model, optimizer = reachable_model()
    assert not step_reachable_rows(model, optimizer, REACHABLE)  # once
    with pytest.raises(RuntimeError, match="outside the training data's vocabulary"):
        model(**batch(0)).loss.backward()  # odd token ids: a batch the data did not announce


def test_cpu_trials_step_the_reachable_rows(write_experiment, watch_train):
    reachable = watch_train("step_reachable_rows")
    assert cli.main(["run", str(write_experiment())]) == 0
    assert reachable == [True, True]  # both trials (two seeds)


@pytest.mark.parametrize("reachable", [False, True])
def test_a_trained_model_is_freed_once_dropped(reachable):
    """The hook on the word embeddings' weight is held by torch's C++ side, out of the garbage
    collector's sight: a hook holding the reachable rows, which hold the weight, kept the weight
    (47 MB for MiniLM) alive after each trial, and a study's process grew by that per trial."""
    import gc
    import weakref

    if reachable:
        model, optimizer = reachable_model()
    else:
        model = tiny()
        assert keep_embedding_gradient(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    train_steps(model, optimizer, ablate_clip, range(2))
    weight = weakref.ref(model.get_input_embeddings().weight)
    del model, optimizer
    gc.collect()
    assert weight() is None
