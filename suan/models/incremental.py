"""Incremental scoring: a per-user state that each new behaviour updates, and candidate scores from it.

For a :class:`~suan.models.ctr.SequenceCTR` built with ``incremental=True`` over a recurrent mixer, a
history token depends only on the behaviours up to it (position counted from the first behaviour, time
gap to the previous one, causal gate), so the state after ``append`` of each behaviour in order, then
``score``, equals ``model(batch)`` over the whole history (up to fp32 summation order). With an O(1)
mixer state (``state_grows`` False: aaren, linear_attn, gated_deltanet) one append costs the same at
L = 10 and L = 10^4, and the state's size never changes.

The state is a flat ``dict[str, Tensor]``, every entry with the batch B first: ``n`` [B] behaviours
appended, ``last_ts`` [B] the latest behaviour's time, ``layers.{i}.*`` each block's state, and with
``pool_history`` ``pool_sum`` [B, D], the running sum of the last layer's (normed) history outputs; with
``pool_inputs`` ``input_sum`` [B, D], the running sum of the behaviours' input embeddings.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from suan.mixers.registry import MIXERS
from suan.models.ctr import SequenceCTR, with_pooled_history
from suan.ops.common.masks import log_time_bucket


class IncrementalCTR(nn.Module):
    """The per-user state form of an incremental :class:`SequenceCTR` (shares its parameters).

    Args:
        model: a SequenceCTR with ``cfg.incremental``; use it in eval mode (dropout is not replayed).
    """

    def __init__(self, model: SequenceCTR) -> None:
        super().__init__()
        if not isinstance(model, SequenceCTR) or not model.cfg.incremental:
            raise ValueError("IncrementalCTR needs a SequenceCTR built with incremental=True "
                             f"(got {type(model).__name__}, incremental={getattr(model.cfg, 'incremental', None)})")
        self.model = model

    @property
    def state_grows(self) -> bool:
        """True when the state keeps per-behaviour entries (a mixer with ``state_grows``)."""
        return MIXERS[self.model.cfg.mixer_name].cls.state_grows

    def init_state(self, batch: int) -> dict[str, Tensor]:
        """The state of ``batch`` users with no behaviour yet."""
        device = self.model.pos_emb.weight.device
        state = {"n": torch.zeros(batch, dtype=torch.int64, device=device),
                 "last_ts": torch.zeros(batch, dtype=torch.int64, device=device)}
        for i, block in enumerate(self.model.blocks):
            state.update({f"layers.{i}.{k}": v for k, v in block.init_state(batch).items()})
        if self.model.cfg.pool_history:
            state["pool_sum"] = torch.zeros(batch, self.model.cfg.d_model, device=device)
        if self.model.cfg.pool_inputs:
            state["input_sum"] = torch.zeros(batch, self.model.cfg.d_model, device=device)
        return state

    def append(self, state: dict[str, Tensor], behaviour: dict[str, Tensor]) -> dict[str, Tensor]:
        """Append one behaviour per row (every row advances; the input state is not modified).

        Args:
            state: from :meth:`init_state` or a previous ``append``.
            behaviour: user-profile fields [B], behaviour fields (``hist_*``) [B] and ``hist_ts`` [B]
                (not earlier than the previous behaviour's).

        Returns:
            the new state.
        """
        m, n, ts = self.model, state["n"], behaviour["hist_ts"]
        token = m.embed.history({f: behaviour[f].unsqueeze(1) for f in m.embed.seq_fields})[:, 0]  # [B, D]
        gap = torch.where(n > 0, ts - state["last_ts"], torch.zeros_like(ts))
        x = token + m.pos_emb(1 + n.clamp(max=m.cfg.seq_len - 1)) + m.time_emb(log_time_bucket(gap))  # [B, D]
        ctx = {"profile": m.embed.profile(behaviour), "count": n + 1}
        new = {"n": n + 1, "last_ts": ts}
        for i, block in enumerate(m.blocks):
            x, layer = block.step(x, ts, ctx, _layer(state, i))
            new.update({f"layers.{i}.{k}": v for k, v in layer.items()})
        if m.cfg.pool_history:  # a history output is final once computed (causal), so its sum can run
            new["pool_sum"] = state["pool_sum"] + m.final_norm(x)  # [B, D]
        if m.cfg.pool_inputs:  # the behaviour's own embedding, before position, time and blocks
            new["input_sum"] = state["input_sum"] + token  # [B, D]
        return new

    def score(self, state: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        """Raw logits of candidates from the state, as ``model(batch)`` gives them over the whole history.

        Args:
            state: the state after the user's history.
            batch: profile and context fields [B], ``dense`` [B, F], target fields [B] or [B, C],
                ``target_ts`` [B].

        Returns:
            [B] or [B, C] logits (``model.probabilities`` calibrates them).
        """
        m, n = self.model, state["n"]
        single, C = m._candidate_ids_shape(batch)
        target_ts = batch["target_ts"]
        gap = torch.where(n > 0, target_ts - state["last_ts"], torch.zeros_like(target_ts))
        pos = torch.zeros_like(n)
        x = m.embed.candidates(batch) + m.pos_emb(pos).unsqueeze(1) + m.time_emb(log_time_bucket(gap)).unsqueeze(1)
        profile = m.embed.profile(batch)
        ctx = {"profile": profile, "count": n}
        ts_c = target_ts.unsqueeze(1).expand(-1, C)  # [B, C]
        for i, block in enumerate(m.blocks):
            x = block.candidates(x, ts_c, ctx, _layer(state, i))  # [B, C, D]
        out = m.final_norm(x)  # [B, C, D]
        count = n.clamp(min=1).unsqueeze(1).to(out.dtype)  # [B, 1]
        if m.cfg.pool_history:
            out = with_pooled_history(out, state["pool_sum"] / count)
        if m.cfg.pool_inputs:
            out = with_pooled_history(out, state["input_sum"] / count)
        return m.score_outputs(out, batch, profile, single)


def _layer(state: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    prefix = f"layers.{i}."
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
