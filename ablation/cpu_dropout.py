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
from .packing import AttentionGroup, Packing

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
    Packed inputs (``packing.py``) are attended in padded shapes: while training in fp32 by
    ``_PackedDropoutAttention`` (unless the call records attention weights), otherwise in the
    whole padded batch through ``Packing.attend``."""
    packing = kwargs.pop(PACKING_KWARG, None)
    own = _own_attention(module) if any(kwargs.get(k) is not None for k in _OTHER_MATHS) else None
    if own is not None:  # maths ours leaves out: the model's own attention (torch's dropout masks)
        if packing is not None:
            return packing.attend(own, module, query, key, value, scaling=scaling, dropout=dropout, **kwargs)
        return own(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if packing is not None:
        plain_fp32 = query.dtype == torch.float32 and not torch.is_autocast_enabled(query.device.type)
        if dropout > 0.0 and plain_fp32 and not _attention_weights_recorded():
            return _attend_packed(packing, query, key, value, scaling, dropout)
        return packing.attend(attention, module, query, key, value, scaling=scaling, dropout=dropout,
                              **kwargs)
    if dropout == 0.0:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=0.0, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    if key.shape[1] != query.shape[1]:
        # Grouped-query attention (Llama 3, Qwen2, Mistral, Gemma): each key and value head serves
        # a group of query heads, as the models' own eager attention repeats them (repeat_kv).
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = _dropout_fn(nn.functional.softmax(weights, dim=-1), dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


_dropout_fn = dropout  # `attention`'s argument named `dropout` (the interface's) hides the function

# Arguments of an attention call that change its maths beyond softmax(QKᵀ·s + mask)·V, which
# `attention` (and SDPA, which it calls outside training) would leave out or refuse: Gemma 2's
# logit soft-capping (SDPA raises on it: the first evaluation failed), T5's relative position bias
# (dropped while training only: trained without it, evaluated with it), GPT-OSS's attention sinks.
_OTHER_MATHS = ("softcap", "position_bias", "s_aux")


def _own_attention(module: nn.Module) -> Any:
    """The eager attention function of ``module``'s modeling file (transformers'
    ``eager_attention_forward``), or SDPA's where it has none (which takes a position bias, and
    refuses what it cannot compute)."""
    import sys

    own = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if own is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        own = sdpa_attention_forward
    return own


class _PackedDropoutAttention(torch.autograd.Function):
    """``attention`` while training, for packed (tokens, heads, head size) queries, keys and values,
    in the batch's two groups of similar lengths (``Packing.attention_groups``; one where a split
    would save too little area): each group's rows
    copied into its own padded (members × heads, length, head size) layout, attended there with the
    padding mask, the output copied back; backward written out alike. Against the autograd graph
    of one padded batch (``Packing.attend``: unpack, the transposes made contiguous for the
    products, pack) that is fewer copies and passes over a quarter to three quarters of the area:
    a MiniLM layer's attention 1.4× faster, its step 1.03–1.05× on random batches of 16
    (``benchmarks/step_pairs.py``). The same draws as the padded path (one ``keep_mask`` of
    the whole batch's weights, each group reading its members' corner of it), and the same
    products: a real query's scores against its group's extra padded keys are the padding mask's
    minimum, whose softmax weight is exactly 0, as against the batch's."""

    @staticmethod
    def forward(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                groups: tuple[AttentionGroup, ...], batch: int, length: int, scaling: float,
                p: float) -> torch.Tensor:
        tokens, heads, size = query.shape
        flat = [x.reshape(-1, size) for x in (query, key, value)]
        keep = keep_mask(torch.Size((batch, heads, length, length)), p, query.device)
        scale = 1.0 / (1.0 - p)
        output = query.new_empty(tokens * heads, size)
        saved = []
        for group in groups:
            query_, key_, value_ = (group.pad(x, heads) for x in flat)
            scores = torch.bmm(query_, key_.transpose(1, 2)).view(-1, heads, group.length, group.length)
            probabilities = torch.softmax(scores.mul_(scaling).add_(group.mask), dim=-1)
            kept = keep.index_select(0, group.members)[:, :, :group.length, :group.length]
            weights = torch.where(kept, probabilities, 0.0).mul_(scale)
            group.unpad(torch.bmm(weights.view(-1, group.length, group.length), value_), output)
            saved += [query_, key_, value_, probabilities, kept, weights]
        ctx.save_for_backward(*saved)
        ctx.groups, ctx.scaling, ctx.scale = groups, scaling, scale
        return output.view(tokens, heads, size)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        tokens, heads, size = grad.shape
        flat = grad.reshape(-1, size)
        grads = [grad.new_empty(tokens * heads, size) for _ in range(3)]
        saved = ctx.saved_tensors
        for number, group in enumerate(ctx.groups):
            query, key, value, probabilities, kept, weights = saved[6 * number:6 * number + 6]
            grad_output = group.pad(flat, heads)
            grad_weights = torch.bmm(grad_output, value.transpose(1, 2)).view(probabilities.shape)
            grad_probabilities = torch.where(kept, grad_weights, 0.0).mul_(ctx.scale)
            grad_scores = torch._softmax_backward_data(grad_probabilities, probabilities, -1,
                                                       probabilities.dtype).mul_(ctx.scaling)
            grad_scores = grad_scores.view(-1, group.length, group.length)
            group.unpad(torch.bmm(grad_scores, key), grads[0])
            group.unpad(torch.bmm(grad_scores.transpose(1, 2), query), grads[1])
            group.unpad(torch.bmm(weights.view(-1, group.length, group.length).transpose(1, 2), grad_output),
                        grads[2])
        return (*(g.view(tokens, heads, size) for g in grads), None, None, None, None, None)


def _attend_packed(packing: Packing, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   scaling: float | None, p: float) -> tuple[torch.Tensor, None]:
    """Packed (1, heads, tokens, head size) inputs → the output as attention interfaces return it,
    (1, tokens, heads, head size); no weights (``attention`` asks for them only where recorded)."""
    heads, size = query.shape[1], query.shape[3]
    output = _PackedDropoutAttention.apply(
        *(t[0].transpose(0, 1) for t in (query, key, value)), packing.attention_groups(heads),
        packing.batch, packing.length, size ** -0.5 if scaling is None else scaling, p)
    return output[None], None


def _attention_weights_recorded() -> bool:
    """Whether the model call records attention weights (``output_attentions=True``): transformers
    collects them from the attention modules' outputs. True where that cannot be told."""
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:
        return True
    collected = _active_collector.get()  # None: no model call records anything
    return collected is not None and "attentions" in collected


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
