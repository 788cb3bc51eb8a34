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

AdamW still stepped the whole table, though a study's training data reaches a few thousand of its
rows: with no weight decay, a row that never has a gradient has zero moments, and AdamW leaves it
exactly as it is. ``step_reachable_rows`` hands the optimizer those rows as one compact tensor
instead (``ReachableRows``): the hook adds the gradient there, AdamW steps it, and its rows are
written back into the weight after each step; the weights, optimizer moments and clipping are
the whole table's, row for row.

Used only for trials that train on CPU in one process; a GPU keeps torch's kernels.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import torch
from torch import nn
from torch.nn import functional

log = logging.getLogger(__name__)


class ReachableRows:
    """The word embeddings' rows that the training data can reach (``ids``), as one compact tensor
    (``param``) that the optimizer steps in the weight's place. Before a step it is read from the
    weight if something else wrote the weight since (loading a checkpoint); after it, it is
    written back, so that evaluation and saved files see the trained rows."""

    def __init__(self, weight: torch.Tensor, ids: torch.Tensor) -> None:
        self.weight, self.ids = weight, ids
        self.slot = torch.full((weight.shape[0],), -1, dtype=torch.long, device=weight.device)
        self.slot[ids] = torch.arange(len(ids), device=weight.device)
        self.param = nn.Parameter(weight.detach().index_select(0, ids))
        self._version = weight._version  # the weight's, when `param` was last in step with it

    def slots(self, indices: torch.Tensor) -> torch.Tensor:
        """``param``'s rows of the vocabulary ``indices``."""
        slots = self.slot[indices]
        if bool((slots < 0).any()):
            raise RuntimeError("a training batch holds a token outside the training data's vocabulary")
        return slots

    def read(self, *_: Any) -> None:
        """An optimizer step pre-hook: ``param`` from the weight, if the weight changed since."""
        if self.weight._version != self._version:
            with torch.no_grad():
                self.param.copy_(self.weight.index_select(0, self.ids))
            self._version = self.weight._version

    def write(self, *_: Any) -> None:
        """An optimizer step post-hook: the stepped rows into the weight. The next backward pass
        starts a new gradient (the Trainer zeroes the model's gradients, and this is not one)."""
        with torch.no_grad():
            self.weight.index_copy_(0, self.ids, self.param)
        self._version = self.weight._version
        self.param.grad = None

    def compact_state(self, optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
        """An optimizer ``load_state_dict`` pre-hook: a whole table's moments (saved before these
        rows were stepped apart) cut to ``param``'s rows, the other rows' being zero."""
        current = [p for group in optimizer.param_groups for p in group["params"]]
        saved = [i for group in state_dict["param_groups"] for i in group["params"]]
        index = saved[next(k for k, p in enumerate(current) if p is self.param)]
        state = state_dict["state"].get(index, {})
        cut = {name: value.index_select(0, self.ids.to(value.device))
               if torch.is_tensor(value) and value.shape == self.weight.shape else value
               for name, value in state.items()}
        return {**state_dict, "state": {**state_dict["state"], index: cut}} if state else state_dict


class _DenseFromSparse:
    """A post-accumulate-grad hook: a sparse ``.grad`` becomes the kept dense buffer holding its sum
    (``reachable``: the compact one of those rows' ``param``, the weight's ``.grad`` left None).
    It knows which rows of the buffer can be non-zero (``rows``; None: any), so that zeroing it
    and clipping it touch those rows only.

    The hook is held by the weight's C++ side, where the garbage collector does not look, so it
    holds the reachable rows (which hold the weight) weakly: held strongly, the cycle kept the
    weight alive after the trial, 47 MB for MiniLM in each trial of a study's process."""

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.rows: torch.Tensor | None = None
        self._reachable: weakref.ref[ReachableRows] | None = None

    @property
    def reachable(self) -> ReachableRows | None:
        return None if self._reachable is None else self._reachable()

    @reachable.setter
    def reachable(self, rows: ReachableRows | None) -> None:
        self._reachable = None if rows is None else weakref.ref(rows)

    def __call__(self, weight: torch.Tensor) -> None:
        grad = weight.grad
        if self.reachable is not None and grad is not None and grad.is_sparse:
            self._add_to_reachable(weight, grad, self.reachable)
            return
        if grad is None or not grad.is_sparse:
            if grad is self.buffer:  # a dense accumulation (another micro-batch): rows unknown
                self.rows = None
            return
        self._zero_buffer(weight, grad.dtype)
        indices = grad._indices()[0]
        self.buffer.index_add_(0, indices, grad._values())
        self.rows = torch.unique(indices)
        weight.grad = self.buffer

    def _zero_buffer(self, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The kept buffer, zero, for a gradient of ``like``'s shape and device: zeroed in place
        (no fresh pages to fault in), on the rows the last step wrote where they are known."""
        buffer = self.buffer
        if (buffer is None or buffer.shape != like.shape or buffer.dtype != dtype
                or buffer.device != like.device):
            self.buffer = torch.zeros(like.shape, dtype=dtype, device=like.device)
        elif self.rows is None:
            buffer.zero_()
        else:
            buffer.index_fill_(0, self.rows, 0.0)
        return self.buffer

    def _add_to_reachable(self, weight: torch.Tensor, grad: torch.Tensor, reachable: ReachableRows) -> None:
        slots = reachable.slots(grad._indices()[0])
        target = reachable.param
        if target.grad is None:  # a new step (else another micro-batch's gradient adds in)
            target.grad, written = self._zero_buffer(target, grad.dtype), torch.unique(slots)
        else:
            written = None if self.rows is None else torch.unique(torch.cat([self.rows, slots]))
        self.buffer.index_add_(0, slots, grad._values())
        self.rows = written
        weight.grad = None

    def kept_gradient(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The tensor whose gradient is this hook's buffer (``weight``, or its reachable rows'
        ``param``) and the rows outside which that gradient is zero, if they are known."""
        if self.buffer is None or self.rows is None:
            return None
        if weight.grad is self.buffer:
            return weight, self.rows
        if self.reachable is not None and self.reachable.param.grad is self.buffer:
            return self.reachable.param, self.rows
        return None


class KeptGradientEmbedding(nn.Embedding):
    """``nn.Embedding`` whose forward, where gradients are recorded, produces a sparse gradient that
    ``_DenseFromSparse`` turns into the kept dense one; weights, evaluation and saved files are as
    ``nn.Embedding``'s."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Embedding's name)
        if not (torch.is_grad_enabled() and self.weight.requires_grad):
            return super().forward(input)
        hooks = getattr(self.weight, "_post_accumulate_grad_hooks", None) or {}
        hook = next((h for h in hooks.values() if isinstance(h, _DenseFromSparse)), None)
        if hook is None:  # the first step; or a copy (deep copies and saved modules keep no hooks)
            hook = _DenseFromSparse()
            self.weight.register_post_accumulate_grad_hook(hook)
        reachable = getattr(self, "reachable_rows", None)
        hook.reachable = reachable if reachable is not None and reachable.weight is self.weight else None
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


def step_reachable_rows(model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> bool:
    """Let ``optimizer`` step only the word embeddings' rows of the vocabulary ``ids`` (every token
    the training batches can hold, padding included), as one compact tensor (``ReachableRows``),
    where that is the same training: the embeddings keep their gradient (``keep_embedding_gradient``),
    the optimizer is Adam or AdamW, not yet stepped, and the weight has no weight decay (a row
    without gradient then stays exactly as it is). Call it before the first step. Returns whether
    it did."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    adam = isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW)
    if not adam or not isinstance(embedding, KeptGradientEmbedding):
        return False
    weight = embedding.weight
    group = next((g for g in optimizer.param_groups if any(p is weight for p in g["params"])), None)
    if group is None or group.get("weight_decay", 0.0) != 0.0 or optimizer.state.get(weight):
        return False
    ids = torch.unique(ids.to(weight.device))
    if len(ids) == 0 or len(ids) >= weight.shape[0] or int(ids[0]) < 0 or int(ids[-1]) >= weight.shape[0]:
        return False
    rows = ReachableRows(weight, ids)
    group["params"] = [rows.param if p is weight else p for p in group["params"]]
    optimizer.register_step_pre_hook(rows.read)
    optimizer.register_step_post_hook(rows.write)
    optimizer.register_load_state_dict_pre_hook(rows.compact_state)
    embedding.reachable_rows = rows
    log.debug("AdamW steps %d of the %d word embeddings' rows", len(ids), weight.shape[0])
    return True


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor | None:
    """``torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)`` (2-norm) where the word
    embeddings' kept gradient is read and scaled on the rows the step wrote only, the rest being
    zero: the same total norm (summed in another order) and clipped gradients, without two passes
    over the whole vocabulary. None (nothing done) when those rows are not known."""
    found = _kept_rows_hook(model)
    if found is None:
        return None
    weight, hook = found
    kept = hook.kept_gradient(weight)
    if kept is None:
        return None
    owner, rows = kept
    kept_grad = owner.grad
    grads = [p.grad for p in model.parameters() if p.grad is not None and p is not owner] + [kept_grad]
    norms = [torch.linalg.vector_norm(g.index_select(0, rows) if g is kept_grad else g) for g in grads]
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        if g is kept_grad:
            g.index_copy_(0, rows, g.index_select(0, rows).mul_(scale))
        else:
            g.mul_(scale)
    return total
