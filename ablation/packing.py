"""Encoder layers over real tokens only: a padded batch's padding is not computed on CPU.

A batch of tweets in random order is about half padding (``benchmarks/mfu_recipes.py``: 1.90 padded
tokens per real one at batch 16). Every operator of an encoder layer but attention works token by
token, so the layers can run on the real tokens packed into one row; attention alone needs the
batch's shape, so the packed queries, keys and values are put back into it, attended with the
same padding mask, and packed again (while training, into the padded shapes of the batch's two
groups of similar lengths: ``Packing.attention_groups``). The model computes the same function
(the output at a real token is the same; padding positions, which nothing reads, come out as
zeros) with the same weights, gradients and saved files, and trains on the batches the recipe
asked for: length grouping changes which examples train together, this does not.

Used only for trials that train on CPU, with ablate's attention (``cpu_dropout.attention``), and only
for an encoder that a probe at install time shows computes the same logits packed as padded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

KWARG = "ablate_packing"  # how the packing reaches the attention function through the layers
# Attention in two groups of lengths only where they leave at most this share of the padded area:
# a MiniLM layer's attention costs about 2.7 ms per padded batch's area on random batches of 16
# tweets, and a second group's own operators about 0.55 ms (length-grouped batches, 0.90 of the
# area: 4.9 ms in two groups against 4.3 in one), so a split pays below about 0.8.
SPLIT_AREA = 0.75


@dataclass(frozen=True)
class Packing:
    """Where a padded batch's real tokens are: ``index`` into its flattened (batch × length) positions."""

    index: torch.Tensor
    batch: int
    length: int
    mask: torch.Tensor  # the padded batch's attention mask, as the model built it
    _groups: dict[int, tuple[AttentionGroup, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, attention_mask: torch.Tensor) -> Packing | None:
        """From an additive (batch, 1, query, key) mask of a bidirectional encoder: a key is real where
        the mask is 0 in the first query row. None when there is no padding to remove."""
        if attention_mask.dim() != 4 or attention_mask.dtype == torch.bool:
            return None
        real = attention_mask[:, 0, 0, :] == 0
        if bool(real.all()):
            return None
        batch, length = real.shape
        return cls(real.reshape(-1).nonzero().squeeze(1), batch, length, attention_mask)

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """(batch, length, ...) → (1, real tokens, ...)."""
        return padded.reshape(self.batch * self.length, *padded.shape[2:]).index_select(0, self.index)[None]

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """(1, real tokens, ...) → (batch, length, ...), zeros at padding."""
        rows = packed[0]
        flat = rows.new_zeros(self.batch * self.length, *rows.shape[1:]).index_copy(0, self.index, rows)
        return flat.view(self.batch, self.length, *rows.shape[1:])

    def attention_groups(self, heads: int) -> tuple[AttentionGroup, ...]:
        """The batch's sequences in two groups by length, each attended in its own padded shape
        (``cpu_dropout._PackedDropoutAttention``): the shortest ones up to the split that leaves the
        least padded area (members × length² summed over the two groups), then the rest. On random
        batches of 16 tweets that is 0.25–0.73 of the padded batch's area. One group where the
        split would leave more than ``SPLIT_AREA`` of it (length-grouped batches, a batch of one).
        The same for every layer of the batch."""
        if heads not in self._groups:
            lengths = (self.mask[:, 0, 0, :] == 0).sum(dim=1).tolist()  # real keys, as in `of`
            order = sorted(range(self.batch), key=lengths.__getitem__)
            longest = lengths[order[-1]]

            def area(split: int) -> int:
                return split * lengths[order[split - 1]] ** 2 + (self.batch - split) * longest ** 2

            split = min(range(1, self.batch), default=self.batch, key=area)
            if area(split) > SPLIT_AREA * self.batch * longest**2:
                split = self.batch  # one group: a second one's own operators would cost more
            sequence, position = self.index.div(self.length, rounding_mode="floor"), self.index % self.length
            self._groups[heads] = tuple(AttentionGroup.of(self, members, [lengths[b] for b in members],
                                                          sequence, position, heads)
                                        for members in (order[:split], order[split:]) if members)
        return self._groups[heads]

    def attend(self, attention: Callable[..., tuple[torch.Tensor, Any]], module: nn.Module,
               query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               **kwargs: Any) -> tuple[torch.Tensor, Any]:
        """``attention`` over the padded batch for packed (1, heads, tokens, head size) inputs; the
        output packed as attention interfaces return it, (1, tokens, heads, head size)."""
        padded = [self.unpack(t.transpose(1, 2)).transpose(1, 2) for t in (query, key, value)]
        output, weights = attention(module, *padded, self.mask, **kwargs)
        return self.pack(output), weights


@dataclass(frozen=True)
class AttentionGroup:
    """Some of a packed batch's sequences, attended in a padded (members × heads, length, head size)
    layout of their own: ``tokens`` are their rows in the packed (tokens × heads, head size)
    queries, keys and values, ``rows`` the same rows' places in that layout."""

    members: torch.Tensor  # the sequences' rows in the batch
    length: int  # the longest member's
    tokens: torch.Tensor
    rows: torch.Tensor
    mask: torch.Tensor  # the batch's additive mask for the members, cut to `length`

    @classmethod
    def of(cls, packing: Packing, members: list[int], lengths: list[int], sequence: torch.Tensor,
           position: torch.Tensor, heads: int) -> AttentionGroup:
        length = max(lengths)
        device = packing.index.device
        slot = torch.full((packing.batch,), -1, dtype=torch.long, device=device)  # member number
        slot[members] = torch.arange(len(members), device=device)
        token = (slot[sequence] >= 0).nonzero().squeeze(1)  # the members' tokens, in packed order
        head = torch.arange(heads, device=device)
        rows = (slot[sequence[token], None] * heads + head) * length + position[token, None]
        index = torch.tensor(members, device=device)
        mask = packing.mask.index_select(0, index)
        return cls(index, length, (token[:, None] * heads + head).reshape(-1), rows.reshape(-1),
                   mask[:, :, :length if mask.shape[2] > 1 else 1, :length])

    def pad(self, packed: torch.Tensor, heads: int) -> torch.Tensor:
        """Packed (tokens × heads, head size) rows → this group's (members × heads, length, head
        size), zeros at padding."""
        padded = packed.new_zeros(self.members.numel() * heads * self.length, packed.shape[-1])
        padded.index_copy_(0, self.rows, packed.index_select(0, self.tokens))
        return padded.view(-1, self.length, packed.shape[-1])

    def unpad(self, padded: torch.Tensor, packed: torch.Tensor) -> None:
        """This group's real rows of ``padded`` written into their places in ``packed``."""
        packed.index_copy_(0, self.tokens, padded.reshape(-1, packed.shape[-1]).index_select(0, self.rows))


def _forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
             *args: Any, **kwargs: Any) -> Any:
    """A packed encoder's ``forward``: its layers run on the real tokens; it returns the padded shape."""
    stock = super(type(self), self).forward
    cross = args or kwargs.get("encoder_hidden_states") is not None  # cross-attention: as it is
    packing = None if attention_mask is None or cross else Packing.of(attention_mask)
    if packing is None:
        return stock(hidden_states, attention_mask, *args, **kwargs)
    output = stock(packing.pack(hidden_states), None, **kwargs, **{KWARG: packing})
    output.last_hidden_state = packing.unpack(output.last_hidden_state)
    return output


_PACKED: dict[type, type] = {}


def _packed_class(encoder_class: type) -> type:
    """A subclass of ``encoder_class`` with the packed ``forward``: a class, not a patched instance,
    so that a copy of the model stays packed and calls its own layers."""
    if encoder_class not in _PACKED:
        _PACKED[encoder_class] = type(f"Packed{encoder_class.__name__}", (encoder_class,),
                                      {"forward": _forward, "__module__": __name__})
    return _PACKED[encoder_class]


def _encoder(model: nn.Module) -> nn.Module | None:
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    return encoder if isinstance(getattr(encoder, "layer", None), nn.ModuleList) else None


def pack_encoder(model: nn.Module) -> bool:
    """Make ``model``'s encoder run on real tokens only, if it has one, attends with ablate's CPU
    attention (``cpu_dropout.use_uniform_dropout`` installs it), and a probe (two padded
    sequences, evaluation mode) gives the same logits both ways; otherwise leave it. Returns whether
    it did (False for an encoder already packed)."""
    from .cpu_dropout import ATTENTION  # the attention that attends packed inputs

    encoder = _encoder(model)
    config = getattr(model, "config", None)
    if encoder is None or getattr(config, "_attn_implementation", None) != ATTENTION:
        return False
    if getattr(config, "is_decoder", False) or type(encoder) in _PACKED.values():
        return False
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False  # relative positions are computed inside attention, from the padded length
    stock = type(encoder)
    encoder.__class__ = _packed_class(stock)
    if not _same_logits(model, encoder, stock):
        encoder.__class__ = stock
        log.debug("encoder of %s kept padded: the packed probe differs", type(model).__name__)
        return False
    return True


def _same_logits(model: nn.Module, encoder: nn.Module, stock: type) -> bool:
    """Whether a padded probe batch gives the same logits through the packed and the stock encoder."""
    vocab = getattr(model.config, "vocab_size", 2)
    device = next(model.parameters()).device
    input_ids = torch.arange(2 * 6, device=device).remainder(vocab - 1).add(1).view(2, 6)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 3:] = 0
    packed_class = type(encoder)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(input_ids=input_ids, attention_mask=attention_mask).logits
            encoder.__class__ = stock
            try:
                padded = model(input_ids=input_ids, attention_mask=attention_mask).logits
            finally:
                encoder.__class__ = packed_class
    except Exception as err:  # noqa: BLE001 - any failure means: keep the encoder as it was
        log.debug("packed probe failed: %s", err)
        return False
    finally:
        model.train(was_training)
    return packed.shape == padded.shape and torch.allclose(packed, padded, rtol=1e-4, atol=1e-5)
