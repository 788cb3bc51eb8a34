"""The word embeddings' gradient on CPU, written into one buffer kept for the whole trial.

torch's embedding backward builds a dense (vocabulary × hidden) gradient from a freshly allocated
zero tensor every step (47 MB for MiniLM), and the Trainer frees it again at ``zero_grad``. Fresh
memory of that size comes from the kernel page by page, so zeroing it took 12–15 ms of MiniLM's
~280 ms CPU step (``benchmarks/step_pairs.py``), though a batch touches a few hundred of
its 30,522 rows. Here the embedding computes torch's sparse gradient instead (the batch's rows),
and a hook adds it into a dense buffer kept for the trial, which becomes the weight's ``.grad``: the
same dense gradient that clipping and AdamW read, with the same values (float rounding aside:
repeated tokens' rows are summed in another order). ``zero_grad`` then drops only the reference, and
a second micro-batch under gradient accumulation adds into the dense gradient as usual. The hook
knows which rows the step wrote, so the next step zeroes only those, and the Trainer's gradient
clipping (``clip_grad_norm``) reads and scales only those: 8.3 → 4.6 ms for MiniLM's clipping.

Used only for trials that train on CPU in one process; a GPU keeps torch's kernels.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional

log = logging.getLogger(__name__)


class _DenseFromSparse:
    """A post-accumulate-grad hook: a sparse ``.grad`` becomes the kept dense buffer holding its sum.
    It knows which rows of the buffer can be non-zero (``rows``; None: any), so that zeroing it
    and clipping it touch those rows only."""

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.rows: torch.Tensor | None = None

    def __call__(self, weight: torch.Tensor) -> None:
        grad = weight.grad
        if grad is None or not grad.is_sparse:
            if grad is self.buffer:  # a dense accumulation (another micro-batch): rows unknown
                self.rows = None
            return
        if (self.buffer is None or self.buffer.shape != weight.shape or self.buffer.dtype != grad.dtype
                or self.buffer.device != weight.device):
            self.buffer = torch.zeros(weight.shape, dtype=grad.dtype, device=weight.device)
        elif self.rows is None:
            self.buffer.zero_()  # in place: no fresh pages to fault in
        else:
            self.buffer.index_fill_(0, self.rows, 0.0)  # the rows the last step wrote
        indices = grad._indices()[0]
        self.buffer.index_add_(0, indices, grad._values())
        self.rows = torch.unique(indices)
        weight.grad = self.buffer

    def known_rows(self, weight: torch.Tensor) -> torch.Tensor | None:
        """The rows outside which ``weight``'s gradient is zero, if it is this hook's buffer and they
        are known."""
        return self.rows if self.buffer is not None and weight.grad is self.buffer else None


class KeptGradientEmbedding(nn.Embedding):
    """``nn.Embedding`` whose forward, where gradients are recorded, produces a sparse gradient that
    ``_DenseFromSparse`` turns into the kept dense one; weights, evaluation and saved files are as
    ``nn.Embedding``'s."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Embedding's name)
        if not (torch.is_grad_enabled() and self.weight.requires_grad):
            return super().forward(input)
        hooks = getattr(self.weight, "_post_accumulate_grad_hooks", None) or {}
        if not any(isinstance(hook, _DenseFromSparse) for hook in hooks.values()):
            # the first step; or a copy (deep copies and saved modules keep no hooks)
            self.weight.register_post_accumulate_grad_hook(_DenseFromSparse())
        return functional.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                                    self.scale_grad_by_freq, sparse=True)


def keep_embedding_gradient(model: nn.Module) -> bool:
    """Give ``model``'s word embeddings a kept dense gradient buffer (``KeptGradientEmbedding``) where
    that is safe: a plain ``nn.Embedding`` without renormalising (``max_norm``), not already sparse,
    and not tied to an output layer (whose dense gradient would meet the sparse one). Returns
    whether it did."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if type(embedding) is not nn.Embedding or embedding.sparse or embedding.max_norm is not None:
        return False
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and getattr(output, "weight", None) is embedding.weight:
        return False
    embedding.__class__ = KeptGradientEmbedding
    log.debug("word embeddings of %s keep their gradient buffer", type(model).__name__)
    return True


def _kept_rows_hook(model: nn.Module) -> tuple[torch.Tensor, _DenseFromSparse] | None:
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if not isinstance(embedding, KeptGradientEmbedding):
        return None
    hooks = getattr(embedding.weight, "_post_accumulate_grad_hooks", None) or {}
    hook = next((h for h in hooks.values() if isinstance(h, _DenseFromSparse)), None)
    return None if hook is None else (embedding.weight, hook)


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor | None:
    """``torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)`` (2-norm) where the word
    embeddings' kept gradient is read and scaled on the rows the step wrote only, the rest being
    zero: the same total norm (summed in another order) and clipped gradients, without two passes
    over the whole vocabulary. None (nothing done) when those rows are not known."""
    found = _kept_rows_hook(model)
    if found is None:
        return None
    weight, hook = found
    rows = hook.known_rows(weight)
    if rows is None:
        return None
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    norms = [torch.linalg.vector_norm(g.index_select(0, rows) if g is weight.grad else g) for g in grads]
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        if g is weight.grad:
            g.index_copy_(0, rows, g.index_select(0, rows).mul_(scale))
        else:
            g.mul_(scale)
    return total
