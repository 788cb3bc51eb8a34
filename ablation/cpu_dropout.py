"""Dropout on CPU with masks from uniform draws: torch's distribution, a fraction of its cost.

PyTorch's CPU dropout draws its mask with ``bernoulli_``, one element at a time on one thread
(float64 arithmetic per draw); in MiniLM's CPU training step that is 9 % of the time on one CPU and a
third on another (``benchmarks/step_ops.py``). ablate draws uniform integers instead: one 63-bit
draw of torch's generator gives four elements 15 random bits each (a third of the time of one
uniform float per element, ``benchmarks/step_pairs.py``), and ``u >= round(p * 2**15)`` keeps each
element with probability ``1 - p`` rounded to a multiple of 2⁻¹⁵ (within 1.5·10⁻⁵ of it); kept
elements are scaled by ``1 / (1 - p)`` as torch scales them. Only the random stream differs, so a
trial is as reproducible from its seed as before (the draws come from torch's seeded CPU generator,
whose state the Trainer's checkpoints keep).

Used only for trials that train on CPU: a GPU keeps torch's own kernels (fused in SDPA attention).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .packing import KWARG as PACKING_KWARG
from .packing import Packing

log = logging.getLogger(__name__)

ATTENTION = "ablate_cpu_dropout"  # the attention implementation registered with transformers
_REPLACEABLE = ("sdpa", "eager")  # the implementations whose maths ours repeats


_BITS = 15  # random bits per element: four elements per 63-bit draw


def keep_mask(shape: torch.Size, p: float, device: torch.device | None = None) -> torch.Tensor:
    """A bool mask of ``shape``, each element True with probability ``1 - p`` (p rounded to a
    multiple of 2⁻¹⁵), independently: 15 uniform bits an element, four from each of torch's 63-bit
    integer draws (``random_`` on int64 gives 63 uniform bits; the 16-bit words keep their low 15)."""
    count, threshold = shape.numel(), round(p * (1 << _BITS))
    if threshold >= 1 << _BITS:  # p within 2⁻¹⁶ of 1 (an int16 could not hold the threshold)
        return torch.zeros(shape, dtype=torch.bool, device=device)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_()
    bits = words.view(torch.int16)[:count].bitwise_and_((1 << _BITS) - 1)
    return bits.view(shape) >= threshold


class _UniformMaskDropout(torch.autograd.Function):
    """``x * keep / (1 - p)`` with ``keep`` from uniform integer draws (``keep_mask``); the backward
    pass reuses the bool mask (one byte an element, as torch's dropout keeps)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = keep_mask(x.shape, p, x.device)  # the same draws whatever x's dtype
        scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout``'s semantics, with the mask from uniform integer draws."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    return _UniformMaskDropout.apply(x, p)


class UniformDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same ``train``/``eval`` switch) drawing its mask uniformly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, scaling: float | None = None,
              dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' attention interface: BERT's eager attention (softmax(QKᵀ·s + mask), dropout,
    ·V) with the uniform mask while training; SDPA, unchanged, when no dropout applies (evaluation).
    Packed inputs (``packing.py``) are attended in their padded batch: while training in fp32 by
    ``_PackedDropoutAttention``, otherwise through ``Packing.attend``."""
    packing = kwargs.pop(PACKING_KWARG, None)
    if packing is not None:
        plain_fp32 = query.dtype == torch.float32 and not torch.is_autocast_enabled(query.device.type)
        if dropout > 0.0 and plain_fp32:
            return _attend_packed(packing, query, key, value, scaling, dropout)
        return packing.attend(attention, module, query, key, value, scaling=scaling, dropout=dropout,
                              **kwargs)
    if dropout == 0.0:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=0.0, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = _dropout_fn(nn.functional.softmax(weights, dim=-1), dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


_dropout_fn = dropout  # `attention`'s argument named `dropout` (the interface's) hides the function


class _PackedDropoutAttention(torch.autograd.Function):
    """``attention`` while training, for packed (tokens, heads, head size) queries, keys and values:
    each put into the padded (batch × heads, length, head size) layout in one copy, attended there
    with the padding mask, the output gathered back in one; backward written out alike. The autograd
    graph of the same steps (``Packing.attend``: unpack, the transposes made contiguous for the
    products, pack) takes more copies and passes: a MiniLM layer's attention 7.1 → 5.9 ms, its step
    1.03× faster on random batches of 16 (``benchmarks/step_pairs.py``). The same draws (one
    ``keep_mask`` of the weights' shape, where the padded path draws it) and the same products in
    the same order as ``attention``."""

    @staticmethod
    def forward(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, rows: torch.Tensor,
                mask: torch.Tensor, batch: int, length: int, scaling: float,
                p: float) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, heads, size = query.shape

        def padded(x: torch.Tensor) -> torch.Tensor:
            flat = x.new_zeros(batch * heads * length, size).index_copy_(0, rows, x.reshape(-1, size))
            return flat.view(batch * heads, length, size)

        query, key, value = padded(query), padded(key), padded(value)
        scores = torch.bmm(query, key.transpose(1, 2)).view(batch, heads, length, length)
        probabilities = torch.softmax(scores.mul_(scaling).add_(mask), dim=-1)
        keep = keep_mask(probabilities.shape, p, probabilities.device)
        scale = 1.0 / (1.0 - p)
        weights = torch.where(keep, probabilities, 0.0).mul_(scale)
        output = torch.bmm(weights.view(batch * heads, length, length), value)
        ctx.save_for_backward(query, key, value, probabilities, keep, weights, rows)
        ctx.scaling, ctx.scale = scaling, scale
        ctx.mark_non_differentiable(weights)
        return output.view(-1, size).index_select(0, rows).view(tokens, heads, size), weights

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _: Any) -> tuple[torch.Tensor | None, ...]:
        query, key, value, probabilities, keep, weights, rows = ctx.saved_tensors
        tokens, heads, size = grad.shape
        flat = grad.new_zeros(query.numel() // size, size).index_copy_(0, rows, grad.reshape(-1, size))
        grad_output = flat.view(query.shape)
        batch_heads, length, _ = query.shape
        grad_value = torch.bmm(weights.view(batch_heads, length, length).transpose(1, 2), grad_output)
        grad_weights = torch.bmm(grad_output, value.transpose(1, 2)).view(probabilities.shape)
        grad_probabilities = torch.where(keep, grad_weights, 0.0).mul_(ctx.scale)
        grad_scores = torch._softmax_backward_data(grad_probabilities, probabilities, -1, probabilities.dtype)
        grad_scores = grad_scores.mul_(ctx.scaling).view(batch_heads, length, length)
        grad_query = torch.bmm(grad_scores, key)
        grad_key = torch.bmm(grad_scores.transpose(1, 2), query)

        def packed(x: torch.Tensor) -> torch.Tensor:
            return x.view(-1, size).index_select(0, rows).view(tokens, heads, size)

        return packed(grad_query), packed(grad_key), packed(grad_value), None, None, None, None, None, None


def _attend_packed(packing: Packing, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   scaling: float | None, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed (1, heads, tokens, head size) inputs → the output as attention interfaces return it,
    (1, tokens, heads, head size), and the dropped weights in the padded shape."""
    heads, size = query.shape[1], query.shape[3]
    output, weights = _PackedDropoutAttention.apply(
        *(t[0].transpose(0, 1) for t in (query, key, value)), packing.head_rows(heads), packing.mask,
        packing.batch, packing.length, size ** -0.5 if scaling is None else scaling, p)
    return output[None], weights


def use_uniform_dropout(model: nn.Module) -> int:
    """Swap the model's ``nn.Dropout`` modules for ``UniformDropout`` and, where it runs SDPA or eager
    attention through transformers' attention interface, its attention for ``attention``. Returns
    how many dropout modules were swapped. Weights, state dict and saved config are unchanged."""
    swapped = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, UniformDropout(child.p, child.inplace).train(child.training))
                swapped += 1
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) in _REPLACEABLE:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, eager_mask

        AttentionInterface.register(ATTENTION, attention)
        AttentionMaskInterface.register(ATTENTION, eager_mask)  # additive float masks, as eager's
        try:
            model.set_attn_implementation(ATTENTION)
        except (ValueError, AttributeError, NotImplementedError) as err:
            # An architecture that does not route attention through the interface keeps its own.
            log.debug("attention of %s kept: %s", type(model).__name__, err)
    return swapped
