"""The word embeddings' kept gradient buffer (embedding_gradient.py): the same dense gradients and
training as torch's embedding, one buffer reused step after step, only where it is safe (CPU
trials train with it: test_packing.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from ablation import cli
from ablation.embedding_gradient import KeptGradientEmbedding, clip_grad_norm, keep_embedding_gradient

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

