"""Triton kernels shared by the attention ops: target-aware attention over one *part* of the keys.

A part is the set of history keys whose gap ``g = pos(query) - key`` lies in ``[gap_lo, gap_hi]`` (and,
in the residue mode, is a multiple of ``dil``), plus optionally every candidate's own token (``SELF``).
``rel_attention`` and ``hstu_attention`` are one dense part (``g`` in ``[0, W - 1]``); ``sparse_attention``
is a local part (``g`` in ``[0, k]``) followed by a dilated part (``g`` in ``{s, s + r, …}``) that resumes
the online softmax of the first. Scores, bias and masks are computed inside the kernels from positions,
timestamps and the two bias tables: no ``[B, L, L]`` tensor is ever materialised.

Layout: a token ``i`` of sequence ``b``, head ``h`` lives at ``b·s_b + (start[b] + i)·s_t + h·s_h`` in
q, k, v, o (last dim contiguous). Padded ``[B, H, L, D]`` tensors have ``start = 0``; jagged ``[N, H, D]``
values have ``s_b = 0`` and ``start = offsets[:-1]``. Padded rows (``lengths[b] <= i < L``) are written
as exact zeros; in the jagged layout rows past a sequence belong to the next one and are never touched.

Backward is two kernels per part: ``dq`` (one program per query block, no atomics) and ``dk, dv`` (one
program per key block, also accumulating the bias gradients with fp32 atomic adds). See
``suan/ops/rel_attention/README.md`` for the derivation and the loop bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from suan.ops.common.masks import TIME_BUCKET_DIVISOR, TIME_BUCKETS

_DIVISOR = tl.constexpr(TIME_BUCKET_DIVISOR)
_MAX_BUCKET = tl.constexpr(float(TIME_BUCKETS - 1))
_NEG_INF = tl.constexpr(float("-inf"))


@triton.jit
def _index_range(j_lo, j_hi, c, step):
    """``[u_lo, u_hi)``: the indices ``u >= 0`` with ``c + step·u`` in ``[j_lo, j_hi]`` (integer division
    truncates toward zero in Triton, so both ends are kept non-negative before dividing)."""
    u_lo = (tl.maximum(j_lo - c, 0) + step - 1) // step
    u_hi = tl.maximum(j_hi - c + step, 0) // step
    return u_lo, u_hi


@triton.jit
def _time_bucket(dt):
    """``floor(ln(max(|dt|, 1)) / 0.301)`` clipped to 0..127 in fp32, as ``masks.log_time_bucket``. A correctly
    rounded division (a GPU's default fp32 ``/`` is approximate), by a divisor of the operand's own shape
    (``div_rn`` does not broadcast a scalar)."""
    log_dt = tl.log(tl.maximum(tl.abs(dt).to(tl.float32), 1.0))
    x = tl.div_rn(log_dt, tl.zeros_like(log_dt) + _DIVISOR)
    return tl.minimum(tl.maximum(tl.floor(x), 0.0), _MAX_BUCKET).to(tl.int32)


@triton.jit
def _scores(b_q, b_k, pos_q, j, t_q, t_k, m_row, m_key, gap_lo, gap_hi, dil, scale, pos_ptr, time_ptr, P,
            RESIDUE: tl.constexpr, HAS_POS: tl.constexpr, HAS_TIME: tl.constexpr, PRECISION: tl.constexpr):
    """Biased scores of a [BM, BN] tile, which pairs are attended, and the two bias-table indices."""
    b_s = tl.dot(b_q, tl.trans(b_k), input_precision=PRECISION) * scale
    gap = pos_q[:, None] - j[None, :]  # [BM, BN] query position - key position
    m_ok = m_row[:, None] & m_key[None, :] & (gap >= gap_lo) & (gap <= gap_hi)
    if RESIDUE:
        m_ok = m_ok & (gap % dil == 0)
    i_pos = tl.minimum(tl.maximum(gap, 0), P - 1)
    if HAS_POS:
        b_s += tl.load(pos_ptr + i_pos, mask=m_ok, other=0.0).to(tl.float32)
    if HAS_TIME:
        i_time = _time_bucket(t_q[:, None] - t_k[None, :])
        b_s += tl.load(time_ptr + i_time, mask=m_ok, other=0.0).to(tl.float32)
    else:
        i_time = i_pos
    return b_s, m_ok, i_pos, i_time


@triton.jit
def _self_bias(pos_ptr, time_ptr, HAS_POS: tl.constexpr, HAS_TIME: tl.constexpr):
    """Bias of a candidate attending to itself: gap 0 and time bucket 0."""
    bias = 0.0
    if HAS_POS:
        bias += tl.load(pos_ptr).to(tl.float32)
    if HAS_TIME:
        bias += tl.load(time_ptr).to(tl.float32)
    return bias


@triton.jit
def _probs(b_s, b_dp, m_ok, b_lse, b_delta, inv_norm, POINTWISE: tl.constexpr):
    """Attention weights and score gradients: softmax ``p = exp(s - lse)``, ``ds = p·(dp - delta)``;
    pointwise ``p = SiLU(s) / n``, ``ds = SiLU'(s)·dp / n``. Masked pairs get exactly 0."""
    if POINTWISE:
        sig = tl.sigmoid(b_s)
        b_p = tl.where(m_ok, b_s * sig * inv_norm, 0.0)
        b_ds = tl.where(m_ok, sig * (1.0 + b_s * (1.0 - sig)) * b_dp * inv_norm, 0.0)
    else:
        b_p = tl.where(m_ok, tl.exp(b_s - b_lse), 0.0)
        b_ds = b_p * (b_dp - b_delta)
    return b_p, b_ds


@triton.jit
def _online(b_m, b_l, b_s):
    """One online-softmax step over masked scores ``b_s`` ([BM, BN], -inf where masked): new max, the
    rescale factor of the old state, the new weights and the new normaliser. Rows with no score so far
    keep ``m = -inf``; ``m_safe`` avoids ``-inf - -inf``."""
    m_new = tl.maximum(b_m, tl.max(b_s, axis=1))
    m_safe = tl.where(m_new == _NEG_INF, 0.0, m_new)
    alpha = tl.exp(b_m - m_safe)
    b_p = tl.exp(b_s - m_safe[:, None])
    return m_new, alpha, b_p, b_l * alpha + tl.sum(b_p, axis=1)


@triton.jit
def _fwd_part(b_acc, b_m, b_l, b_q, pos_q, t_q, m_row, p_k, p_v, p_ts, s_t, s_tt, j0, j_step, u_lo, u_hi,
              n_hist, gap_lo, gap_hi, dil, scale, pos_ptr, time_ptr, P, D,
              POINTWISE: tl.constexpr, RESIDUE: tl.constexpr, HAS_POS: tl.constexpr, HAS_TIME: tl.constexpr,
              PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Accumulate the keys ``j = j0 + j_step·u``, ``u`` in ``[u_lo, u_hi)``, into the query block's state."""
    o_n = tl.arange(0, BLOCK_N)
    o_d = tl.arange(0, BLOCK_D)
    for u in range(u_lo, u_hi, BLOCK_N):
        i_u = u + o_n
        j = j0 + j_step * i_u  # [BN] key token index
        m_key = (i_u < u_hi) & (j < n_hist)
        m_kd = m_key[:, None] & (o_d < D)[None, :]
        b_k = tl.load(p_k + j[:, None] * s_t + o_d[None, :], mask=m_kd, other=0.0)
        b_v = tl.load(p_v + j[:, None] * s_t + o_d[None, :], mask=m_kd, other=0.0)
        t_k = j
        if HAS_TIME:
            t_k = tl.load(p_ts + j * s_tt, mask=m_key, other=0)
        b_s, m_ok, _, _ = _scores(b_q, b_k, pos_q, j, t_q, t_k, m_row, m_key, gap_lo, gap_hi, dil, scale,
                                  pos_ptr, time_ptr, P, RESIDUE, HAS_POS, HAS_TIME, PRECISION)
        if POINTWISE:
            b_w = tl.where(m_ok, b_s * tl.sigmoid(b_s), 0.0)
            b_acc += tl.dot(b_w.to(b_v.dtype), b_v, input_precision=PRECISION)
        else:
            b_m, alpha, b_p, b_l = _online(b_m, b_l, tl.where(m_ok, b_s, _NEG_INF))
            b_acc = b_acc * alpha[:, None] + tl.dot(b_p.to(b_v.dtype), b_v, input_precision=PRECISION)
    return b_acc, b_m, b_l


@triton.jit
def _dq_part(b_dq, b_q, b_do, b_lse, b_delta, pos_q, t_q, m_row, p_k, p_v, p_ts, s_t, s_tt, j0, j_step,
             u_lo, u_hi, n_hist, gap_lo, gap_hi, dil, scale, inv_norm, pos_ptr, time_ptr, P, D,
             POINTWISE: tl.constexpr, RESIDUE: tl.constexpr, HAS_POS: tl.constexpr, HAS_TIME: tl.constexpr,
             PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Add ``sum_j ds_ij k_j`` over the keys ``j = j0 + j_step·u`` to the query block's (unscaled) dq."""
    o_n = tl.arange(0, BLOCK_N)
    o_d = tl.arange(0, BLOCK_D)
    for u in range(u_lo, u_hi, BLOCK_N):
        i_u = u + o_n
        j = j0 + j_step * i_u  # [BN] key token index
        m_key = (i_u < u_hi) & (j < n_hist)
        m_kd = m_key[:, None] & (o_d < D)[None, :]
        b_k = tl.load(p_k + j[:, None] * s_t + o_d[None, :], mask=m_kd, other=0.0)
        b_v = tl.load(p_v + j[:, None] * s_t + o_d[None, :], mask=m_kd, other=0.0)
        t_k = j
        if HAS_TIME:
            t_k = tl.load(p_ts + j * s_tt, mask=m_key, other=0)
        b_s, m_ok, _, _ = _scores(b_q, b_k, pos_q, j, t_q, t_k, m_row, m_key, gap_lo, gap_hi, dil, scale,
                                  pos_ptr, time_ptr, P, RESIDUE, HAS_POS, HAS_TIME, PRECISION)
        b_dp = tl.dot(b_do, tl.trans(b_v), input_precision=PRECISION)  # [BM, BN]
        _, b_ds = _probs(b_s, b_dp, m_ok, b_lse[:, None], b_delta[:, None], inv_norm, POINTWISE)
        b_dq += tl.dot(b_ds.to(b_k.dtype), b_k, input_precision=PRECISION)
    return b_dq


@triton.jit
def _dkdv_part(b_dk, b_dv, b_k, b_v, j, t_k, m_key, p_q, p_do, p_lse, p_delta, p_ts, s_t, s_lt, s_tt,
               r0, r_step, t_lo, t_hi, row_hi, n_hist, gap_lo, gap_hi, dil, scale, inv_norm,
               pos_ptr, time_ptr, dpos_ptr, dtime_ptr, P, D,
               POINTWISE: tl.constexpr, RESIDUE: tl.constexpr, HAS_POS: tl.constexpr, HAS_TIME: tl.constexpr,
               POS_GRAD: tl.constexpr, TIME_GRAD: tl.constexpr, PRECISION: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """Add the contributions of the query rows ``i = r0 + r_step·t``, ``t`` in ``[t_lo, t_hi)``, ``i < row_hi``,
    to the key block's (unscaled) dk and dv, and their score gradients to the bias gradients."""
    o_m = tl.arange(0, BLOCK_M)
    o_d = tl.arange(0, BLOCK_D)
    for t in range(t_lo, t_hi, BLOCK_M):
        i_t = t + o_m
        rows = r0 + r_step * i_t  # [BM] query token index
        m_row = (i_t < t_hi) & (rows < row_hi)
        m_qd = m_row[:, None] & (o_d < D)[None, :]
        b_q = tl.load(p_q + rows[:, None] * s_t + o_d[None, :], mask=m_qd, other=0.0)
        b_do = tl.load(p_do + rows[:, None] * s_t + o_d[None, :], mask=m_qd, other=0.0)
        b_lse = tl.load(p_lse + rows * s_lt, mask=m_row, other=0.0)
        b_delta = tl.load(p_delta + rows * s_lt, mask=m_row, other=0.0)
        t_q = rows
        if HAS_TIME:
            t_q = tl.load(p_ts + rows * s_tt, mask=m_row, other=0)
        pos_q = tl.minimum(rows, n_hist)
        b_s, m_ok, i_pos, i_time = _scores(b_q, b_k, pos_q, j, t_q, t_k, m_row, m_key, gap_lo, gap_hi, dil,
                                           scale, pos_ptr, time_ptr, P, RESIDUE, HAS_POS, HAS_TIME, PRECISION)
        b_dp = tl.dot(b_do, tl.trans(b_v), input_precision=PRECISION)  # [BM, BN]
        b_p, b_ds = _probs(b_s, b_dp, m_ok, b_lse[:, None], b_delta[:, None], inv_norm, POINTWISE)
        b_dv += tl.dot(tl.trans(b_p).to(b_do.dtype), b_do, input_precision=PRECISION)
        b_dk += tl.dot(tl.trans(b_ds).to(b_q.dtype), b_q, input_precision=PRECISION)
        # the bias tables are shared by heads and pairs: fp32 atomics, only for attended pairs
        if POS_GRAD:
            tl.atomic_add(dpos_ptr + i_pos, b_ds, mask=m_ok, sem="relaxed")
        if TIME_GRAD:
            tl.atomic_add(dtime_ptr + i_time, b_ds, mask=m_ok, sem="relaxed")
    return b_dk, b_dv


@triton.jit
def _program_rows(i_m, dil, BLOCK: tl.constexpr, RESIDUE: tl.constexpr):
    """Rows of program ``i_m``: ``c + step·(i_t·BLOCK + arange(BLOCK))``; contiguous blocks, or in the residue
    mode ``BLOCK`` rows of the residue class ``c = i_m % dil`` (every dil-th row)."""
    if RESIDUE:
        c = i_m % dil
        i_t = i_m // dil
        step = dil
    else:
        c = i_m * 0
        i_t = i_m
        step = i_m * 0 + 1
    return c, step, c + step * (i_t * BLOCK + tl.arange(0, BLOCK))


@triton.jit
def attention_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, o_init_ptr, ts_ptr, len_ptr, tgt_ptr, start_ptr, pos_ptr, time_ptr,
    s_b, s_h, s_t, s_lb, s_lh, s_lt, s_tb, s_tt,
    H, D, P, seq_len, scale, gap_lo, gap_hi, dil,
    POINTWISE: tl.constexpr, RESIDUE: tl.constexpr, SELF: tl.constexpr, HAS_INIT: tl.constexpr,
    PADDED: tl.constexpr, HAS_POS: tl.constexpr, HAS_TIME: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """One part of the attention for a block of query rows of one (sequence, head); see the module doc."""
    i_m, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    n = tl.load(len_ptr + i_b).to(tl.int32)
    n_hist = n - tl.load(tgt_ptr + i_b).to(tl.int32)
    start = tl.load(start_ptr + i_b).to(tl.int64)
    cap = seq_len if PADDED else n
    c, step, rows = _program_rows(i_m, dil, BLOCK_M, RESIDUE)
    if tl.min(rows, axis=0) >= cap:
        return
    o_d = tl.arange(0, BLOCK_D)
    p_x = i_b.to(tl.int64) * s_b + i_h.to(tl.int64) * s_h + start * s_t
    p_l = i_b.to(tl.int64) * s_lb + i_h.to(tl.int64) * s_lh + start * s_lt
    p_ts = ts_ptr + i_b.to(tl.int64) * s_tb + start * s_tt
    m_row = rows < n
    m_qd = m_row[:, None] & (o_d < D)[None, :]
    b_q = tl.load(q_ptr + p_x + rows[:, None] * s_t + o_d[None, :], mask=m_qd, other=0.0)
    pos_q = tl.minimum(rows, n_hist)
    t_q = rows
    if HAS_TIME:
        t_q = tl.load(p_ts + rows * s_tt, mask=m_row, other=0)
    if HAS_INIT:
        # resume the softmax of an earlier part: (m, l, acc) = (lse, 1, o) is its exact state
        b_m = tl.where(m_row, tl.load(lse_ptr + p_l + rows * s_lt, mask=m_row, other=0.0), _NEG_INF)
        b_l = tl.where(m_row, 1.0, 0.0)
        b_acc = tl.load(o_init_ptr + p_x + rows[:, None] * s_t + o_d[None, :], mask=m_qd, other=0.0)
    else:
        b_m = tl.full([BLOCK_M], _NEG_INF, tl.float32)
        b_l = tl.zeros([BLOCK_M], tl.float32)
        b_acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    # keys of the rows' own residue class (every key when contiguous) within the block's gap range
    pos_lo = tl.min(tl.where(m_row, pos_q, n_hist), axis=0)
    pos_hi = tl.max(tl.where(m_row, pos_q, 0), axis=0)
    u_lo, u_hi = _index_range(pos_lo - gap_hi, tl.minimum(pos_hi - gap_lo, n_hist - 1), c, step)
    b_acc, b_m, b_l = _fwd_part(b_acc, b_m, b_l, b_q, pos_q, t_q, m_row, k_ptr + p_x, v_ptr + p_x, p_ts,
                                s_t, s_tt, c, step, u_lo, u_hi, n_hist, gap_lo, gap_hi, dil, scale,
                                pos_ptr, time_ptr, P, D, POINTWISE, RESIDUE, HAS_POS, HAS_TIME, PRECISION,
                                BLOCK_N, BLOCK_D)
    if RESIDUE:
        # candidates sit at position n_hist: their dilated keys are in the class of n_hist, not of their row
        c_cand = n_hist % dil
        n_cand = tl.sum((m_row & (rows >= n_hist)).to(tl.int32), axis=0)
        if (n_cand > 0) & (c_cand != c):
            u_lo, u_hi = _index_range(n_hist - gap_hi, n_hist - gap_lo, c_cand, dil)
            b_acc, b_m, b_l = _fwd_part(b_acc, b_m, b_l, b_q, pos_q, t_q, m_row, k_ptr + p_x, v_ptr + p_x,
                                        p_ts, s_t, s_tt, c_cand, dil, u_lo, u_hi, n_hist, gap_lo, gap_hi, dil,
                                        scale, pos_ptr, time_ptr, P, D, POINTWISE, RESIDUE, HAS_POS,
                                        HAS_TIME, PRECISION, BLOCK_N, BLOCK_D)
    inv_norm = 1.0 / (n_hist + 1).to(tl.float32)
    if SELF:
        # a candidate's own token: the one key it sees besides the history
        m_self = m_row & (rows >= n_hist)
        m_sd = m_self[:, None] & (o_d < D)[None, :]
        b_ks = tl.load(k_ptr + p_x + rows[:, None] * s_t + o_d[None, :], mask=m_sd, other=0.0).to(tl.float32)
        b_vs = tl.load(v_ptr + p_x + rows[:, None] * s_t + o_d[None, :], mask=m_sd, other=0.0).to(tl.float32)
        b_ss = tl.sum(b_q.to(tl.float32) * b_ks, axis=1) * scale + _self_bias(pos_ptr, time_ptr, HAS_POS, HAS_TIME)
        if POINTWISE:
            b_acc += tl.where(m_self, b_ss * tl.sigmoid(b_ss), 0.0)[:, None] * b_vs
        else:
            b_m, alpha, b_p, b_l = _online(b_m, b_l, tl.where(m_self, b_ss, _NEG_INF)[:, None])
            b_acc = b_acc * alpha[:, None] + tl.sum(b_p, axis=1)[:, None] * b_vs
    if POINTWISE:
        b_o = b_acc * inv_norm
    else:
        l_safe = tl.where(b_l > 0.0, b_l, 1.0)
        b_o = b_acc / l_safe[:, None]
        lse = tl.where(m_row, b_m + tl.log(l_safe), 0.0)
        tl.store(lse_ptr + p_l + rows * s_lt, lse, mask=rows < cap)
    b_o = tl.where(m_row[:, None], b_o, 0.0)
    tl.store(o_ptr + p_x + rows[:, None] * s_t + o_d[None, :], b_o.to(o_ptr.dtype.element_ty),
             mask=(rows < cap)[:, None] & (o_d < D)[None, :])


@triton.jit
def attention_bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, ts_ptr, len_ptr, tgt_ptr, start_ptr, pos_ptr,
    time_ptr, s_b, s_h, s_t, s_lb, s_lh, s_lt, s_tb, s_tt,
    H, D, P, seq_len, scale, gap_lo, gap_hi, dil,
    POINTWISE: tl.constexpr, RESIDUE: tl.constexpr, SELF: tl.constexpr, ACCUMULATE: tl.constexpr,
    PADDED: tl.constexpr, HAS_POS: tl.constexpr, HAS_TIME: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """dq of one part for a block of query rows (the key loops of the forward kernel)."""
    i_m, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    n = tl.load(len_ptr + i_b).to(tl.int32)
    n_hist = n - tl.load(tgt_ptr + i_b).to(tl.int32)
    start = tl.load(start_ptr + i_b).to(tl.int64)
    cap = seq_len if PADDED else n
    c, step, rows = _program_rows(i_m, dil, BLOCK_M, RESIDUE)
    if tl.min(rows, axis=0) >= cap:
        return
    o_d = tl.arange(0, BLOCK_D)
    p_x = i_b.to(tl.int64) * s_b + i_h.to(tl.int64) * s_h + start * s_t
    p_l = i_b.to(tl.int64) * s_lb + i_h.to(tl.int64) * s_lh + start * s_lt
    p_ts = ts_ptr + i_b.to(tl.int64) * s_tb + start * s_tt
    m_row = rows < n
    m_qd = m_row[:, None] & (o_d < D)[None, :]
    b_q = tl.load(q_ptr + p_x + rows[:, None] * s_t + o_d[None, :], mask=m_qd, other=0.0)
    b_do = tl.load(do_ptr + p_x + rows[:, None] * s_t + o_d[None, :], mask=m_qd, other=0.0)
    b_lse = tl.load(lse_ptr + p_l + rows * s_lt, mask=m_row, other=0.0)
    b_delta = tl.load(delta_ptr + p_l + rows * s_lt, mask=m_row, other=0.0)
    pos_q = tl.minimum(rows, n_hist)
    t_q = rows
    if HAS_TIME:
        t_q = tl.load(p_ts + rows * s_tt, mask=m_row, other=0)
    inv_norm = 1.0 / (n_hist + 1).to(tl.float32)
    b_dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    pos_lo = tl.min(tl.where(m_row, pos_q, n_hist), axis=0)
    pos_hi = tl.max(tl.where(m_row, pos_q, 0), axis=0)
    u_lo, u_hi = _index_range(pos_lo - gap_hi, tl.minimum(pos_hi - gap_lo, n_hist - 1), c, step)
    b_dq = _dq_part(b_dq, b_q, b_do, b_lse, b_delta, pos_q, t_q, m_row, k_ptr + p_x, v_ptr + p_x, p_ts, s_t,
                    s_tt, c, step, u_lo, u_hi, n_hist, gap_lo, gap_hi, dil, scale, inv_norm, pos_ptr, time_ptr,
                    P, D, POINTWISE, RESIDUE, HAS_POS, HAS_TIME, PRECISION, BLOCK_N, BLOCK_D)
    if RESIDUE:
        c_cand = n_hist % dil
        n_cand = tl.sum((m_row & (rows >= n_hist)).to(tl.int32), axis=0)
        if (n_cand > 0) & (c_cand != c):
            u_lo, u_hi = _index_range(n_hist - gap_hi, n_hist - gap_lo, c_cand, dil)
            b_dq = _dq_part(b_dq, b_q, b_do, b_lse, b_delta, pos_q, t_q, m_row, k_ptr + p_x, v_ptr + p_x,
                            p_ts, s_t, s_tt, c_cand, dil, u_lo, u_hi, n_hist, gap_lo, gap_hi, dil, scale,
                            inv_norm, pos_ptr, time_ptr, P, D, POINTWISE, RESIDUE, HAS_POS, HAS_TIME,
                            PRECISION, BLOCK_N, BLOCK_D)
    if SELF:
        m_self = m_row & (rows >= n_hist)
        m_sd = m_self[:, None] & (o_d < D)[None, :]
        b_ks = tl.load(k_ptr + p_x + rows[:, None] * s_t + o_d[None, :], mask=m_sd, other=0.0).to(tl.float32)
        b_vs = tl.load(v_ptr + p_x + rows[:, None] * s_t + o_d[None, :], mask=m_sd, other=0.0).to(tl.float32)
        b_ss = tl.sum(b_q.to(tl.float32) * b_ks, axis=1) * scale + _self_bias(pos_ptr, time_ptr, HAS_POS, HAS_TIME)
        b_dps = tl.sum(b_do.to(tl.float32) * b_vs, axis=1)
        _, b_dss = _probs(b_ss, b_dps, m_self, b_lse, b_delta, inv_norm, POINTWISE)
        b_dq += b_dss[:, None] * b_ks
    b_dq = b_dq * scale
    p_dq = dq_ptr + p_x + rows[:, None] * s_t + o_d[None, :]
    m_store = (rows < cap)[:, None] & (o_d < D)[None, :]
    if ACCUMULATE:
        b_dq += tl.load(p_dq, mask=m_store, other=0.0).to(tl.float32)
    tl.store(p_dq, b_dq.to(dq_ptr.dtype.element_ty), mask=m_store)


@triton.jit
def attention_bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, ts_ptr, len_ptr, tgt_ptr, start_ptr,
    pos_ptr, time_ptr, dpos_ptr, dtime_ptr, s_b, s_h, s_t, s_lb, s_lh, s_lt, s_tb, s_tt,
    H, D, P, seq_len, scale, gap_lo, gap_hi, dil,
    POINTWISE: tl.constexpr, RESIDUE: tl.constexpr, SELF: tl.constexpr, ACCUMULATE: tl.constexpr,
    PADDED: tl.constexpr, HAS_POS: tl.constexpr, HAS_TIME: tl.constexpr, POS_GRAD: tl.constexpr,
    TIME_GRAD: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """dk, dv (and the bias gradients) of one part for a block of key rows: loops over the query rows that
    can see them, history rows of the same residue class first, then the candidates."""
    i_n, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    n = tl.load(len_ptr + i_b).to(tl.int32)
    n_hist = n - tl.load(tgt_ptr + i_b).to(tl.int32)
    start = tl.load(start_ptr + i_b).to(tl.int64)
    cap = seq_len if PADDED else n
    c, step, keys = _program_rows(i_n, dil, BLOCK_N, RESIDUE)
    if tl.min(keys, axis=0) >= cap:
        return
    o_d = tl.arange(0, BLOCK_D)
    p_x = i_b.to(tl.int64) * s_b + i_h.to(tl.int64) * s_h + start * s_t
    p_l = i_b.to(tl.int64) * s_lb + i_h.to(tl.int64) * s_lh + start * s_lt
    p_ts = ts_ptr + i_b.to(tl.int64) * s_tb + start * s_tt
    # k, v of every valid token in the block (candidates for their self term); only history keys in pairs
    m_in = keys < n
    m_kd = m_in[:, None] & (o_d < D)[None, :]
    b_k = tl.load(k_ptr + p_x + keys[:, None] * s_t + o_d[None, :], mask=m_kd, other=0.0)
    b_v = tl.load(v_ptr + p_x + keys[:, None] * s_t + o_d[None, :], mask=m_kd, other=0.0)
    m_key = keys < n_hist
    t_k = keys
    if HAS_TIME:
        t_k = tl.load(p_ts + keys * s_tt, mask=m_in, other=0)
    inv_norm = 1.0 / (n_hist + 1).to(tl.float32)
    b_dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    b_dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    j_lo = tl.min(keys, axis=0)
    j_hi = tl.minimum(tl.max(keys, axis=0), n_hist - 1)
    # history queries i = j + g of the keys' own class, g in [gap_lo, gap_hi]
    t_lo, t_hi = _index_range(j_lo + gap_lo, tl.minimum(j_hi + gap_hi, n_hist - 1), c, step)
    b_dk, b_dv = _dkdv_part(b_dk, b_dv, b_k, b_v, keys, t_k, m_key, q_ptr + p_x, do_ptr + p_x, lse_ptr + p_l,
                            delta_ptr + p_l, p_ts, s_t, s_lt, s_tt, c, step, t_lo, t_hi, n_hist, n_hist, gap_lo,
                            gap_hi, dil, scale, inv_norm, pos_ptr, time_ptr, dpos_ptr, dtime_ptr, P, D,
                            POINTWISE, RESIDUE, HAS_POS, HAS_TIME, POS_GRAD, TIME_GRAD, PRECISION, BLOCK_M,
                            BLOCK_D)
    # candidates (rows n_hist..n-1, all at position n_hist) see these keys if a gap n_hist - j is in range
    sees = (n > n_hist) & (j_lo < n_hist) & (n_hist - j_hi <= gap_hi) & (n_hist - j_lo >= gap_lo)
    if RESIDUE:
        sees = sees & (n_hist % dil == c)
    if sees:
        b_dk, b_dv = _dkdv_part(b_dk, b_dv, b_k, b_v, keys, t_k, m_key, q_ptr + p_x, do_ptr + p_x,
                                lse_ptr + p_l, delta_ptr + p_l, p_ts, s_t, s_lt, s_tt, 0, 1, n_hist, n, n,
                                n_hist, gap_lo, gap_hi, dil, scale, inv_norm, pos_ptr, time_ptr, dpos_ptr,
                                dtime_ptr, P, D, POINTWISE, RESIDUE, HAS_POS, HAS_TIME, POS_GRAD, TIME_GRAD,
                                PRECISION, BLOCK_M, BLOCK_D)
    if SELF:
        # candidate keys are seen by their own query only
        m_self = m_in & (keys >= n_hist)
        m_sd = m_self[:, None] & (o_d < D)[None, :]
        p_self = p_x + keys[:, None] * s_t + o_d[None, :]
        b_qs = tl.load(q_ptr + p_self, mask=m_sd, other=0.0).to(tl.float32)
        b_dos = tl.load(do_ptr + p_self, mask=m_sd, other=0.0).to(tl.float32)
        b_lse = tl.load(lse_ptr + p_l + keys * s_lt, mask=m_self, other=0.0)
        b_delta = tl.load(delta_ptr + p_l + keys * s_lt, mask=m_self, other=0.0)
        b_ss = tl.sum(b_qs * b_k.to(tl.float32), axis=1) * scale + _self_bias(pos_ptr, time_ptr, HAS_POS, HAS_TIME)
        b_dps = tl.sum(b_dos * b_v.to(tl.float32), axis=1)
        b_ps, b_dss = _probs(b_ss, b_dps, m_self, b_lse, b_delta, inv_norm, POINTWISE)
        b_dv += b_ps[:, None] * b_dos
        b_dk += b_dss[:, None] * b_qs
        if POS_GRAD:
            tl.atomic_add(dpos_ptr, tl.sum(b_dss, axis=0), sem="relaxed")
        if TIME_GRAD:
            tl.atomic_add(dtime_ptr, tl.sum(b_dss, axis=0), sem="relaxed")
    b_dk = b_dk * scale
    m_store = (keys < cap)[:, None] & (o_d < D)[None, :]
    p_dk = dk_ptr + p_x + keys[:, None] * s_t + o_d[None, :]
    p_dv = dv_ptr + p_x + keys[:, None] * s_t + o_d[None, :]
    if ACCUMULATE:
        b_dk += tl.load(p_dk, mask=m_store, other=0.0).to(tl.float32)
        b_dv += tl.load(p_dv, mask=m_store, other=0.0).to(tl.float32)
    tl.store(p_dk, b_dk.to(dk_ptr.dtype.element_ty), mask=m_store)
    tl.store(p_dv, b_dv.to(dv_ptr.dtype.element_ty), mask=m_store)


# the interpreter (TRITON_INTERPRET=1 when this module is first imported) runs kernels on CPU tensors
INTERPRETED = type(attention_fwd_kernel).__name__ == "InterpretedFunction"


@dataclass(frozen=True)
class Layout:
    """Where the tokens of every sequence live, for padded ``[B, H, L, D]`` or jagged ``[N, H, D]`` tensors.

    Attributes:
        lengths: [B] int64 valid tokens.
        num_targets: [B] int64 candidates at the end of the valid tokens.
        starts: [B] int64 first token of each sequence (zeros when padded, ``offsets[:-1]`` when jagged).
        timestamps: [B, L] (padded) or [N] (jagged) int64.
        max_len: L when padded, the longest sequence when jagged (sizes the grid).
        padded: whether rows ``lengths[b] <= i < L`` exist (and are written as zeros).
    """

    lengths: Tensor
    num_targets: Tensor
    starts: Tensor
    timestamps: Tensor
    max_len: int
    padded: bool

    @staticmethod
    def from_padded(lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Layout:
        """Layout of right-padded ``[B, H, L, D]`` tensors (timestamps [B, L])."""
        return Layout(lengths.long().contiguous(), num_targets.long().contiguous(), torch.zeros_like(lengths).long(),
                      timestamps.long().contiguous(), timestamps.shape[1], True)

    @staticmethod
    def from_jagged(offsets: Tensor, num_targets: Tensor, timestamps: Tensor, max_len: int) -> Layout:
        """Layout of jagged ``[N, H, D]`` values with ``offsets`` [B + 1] (timestamps [N])."""
        offsets = offsets.long()
        lengths = (offsets[1:] - offsets[:-1]).contiguous()
        return Layout(lengths, torch.minimum(num_targets.long(), lengths).contiguous(), offsets[:-1].contiguous(),
                      timestamps.long().contiguous(), int(max_len), False)

    def token_strides(self, x: Tensor) -> tuple[int, int, int]:
        """(batch, head, token) strides of a [B, H, L, ...] (padded) or [N, H, ...] (jagged) tensor."""
        return (x.stride(0), x.stride(1), x.stride(2)) if self.padded else (0, x.stride(1), x.stride(0))

    def time_strides(self) -> tuple[int, int]:
        ts = self.timestamps
        return (ts.stride(0), ts.stride(1)) if self.padded else (0, ts.stride(0))


@dataclass(frozen=True)
class Part:
    """The keys of one launch: history keys with gap in ``[gap_lo, gap_hi]`` (multiples of ``dilation`` in
    the residue mode), plus every candidate's own token when ``self_term``."""

    gap_lo: int
    gap_hi: int
    dilation: int = 1
    residue: bool = False
    self_term: bool = True


def dense_part(max_attn_len: int, max_len: int) -> Part:
    """The keys of ``rel_attention`` / ``hstu_attention``: every earlier history key within the window."""
    return Part(0, max_attn_len - 1 if max_attn_len > 0 else max(max_len, 1))


def check_device(q: Tensor) -> None:
    """Raise unless the kernels can run on ``q``'s device."""
    if not q.is_cuda and not INTERPRETED:
        raise RuntimeError("backend='triton' needs CUDA tensors (on CPU only the Triton interpreter runs the "
                           "kernels: set TRITON_INTERPRET=1 before suan's Triton kernels are first imported)")


def _config(q: Tensor) -> tuple[dict, dict]:
    """Block sizes (constexpr) and launch options. Small blocks in the interpreter make tiny test shapes span
    several blocks; 64 × 64 tiles on a GPU (tl.dot needs every tile dim >= 16)."""
    block_d = max(16, triton.next_power_of_2(q.shape[-1]))
    if INTERPRETED:
        return dict(BLOCK_M=16, BLOCK_N=16, BLOCK_D=block_d), {}
    return dict(BLOCK_M=64, BLOCK_N=64, BLOCK_D=block_d), dict(num_warps=4, num_stages=2)


def _grid(layout: Layout, part: Part, block: int, batch_heads: int) -> tuple[int, int]:
    rows = max(layout.max_len, 1)
    if part.residue:
        return part.dilation * triton.cdiv(triton.cdiv(rows, part.dilation), block), batch_heads
    return triton.cdiv(rows, block), batch_heads


def _common(q: Tensor, layout: Layout, lse: Tensor, pos_bias: Tensor | None, time_bias: Tensor | None,
            part: Part, scale: float) -> tuple[list, list, dict]:
    """Pointer args after the kernel's own tensors, the runtime scalars, and the shared constexprs."""
    dummy = q
    tensors = [layout.timestamps, layout.lengths, layout.num_targets, layout.starts,
               dummy if pos_bias is None else pos_bias, dummy if time_bias is None else time_bias]
    scalars = [*layout.token_strides(q), *layout.token_strides(lse), *layout.time_strides(),
               q.shape[1], q.shape[-1], 1 if pos_bias is None else pos_bias.shape[0], max(layout.max_len, 1),
               scale, part.gap_lo, part.gap_hi, part.dilation]
    flags = dict(RESIDUE=part.residue, SELF=part.self_term, PADDED=layout.padded, HAS_POS=pos_bias is not None,
                 HAS_TIME=time_bias is not None, PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return tensors, scalars, flags


def forward(q: Tensor, k: Tensor, v: Tensor, layout: Layout, pos_bias: Tensor | None, time_bias: Tensor | None,
            part: Part, scale: float, *, pointwise: bool, out: Tensor, lse: Tensor | None,
            init: Tensor | None = None) -> None:
    """Launch the forward kernel of one part, writing ``out`` (and ``lse`` for softmax).

    Args:
        q, k, v: [B, H, L, D] (padded) or [N, H, D] (jagged), contiguous.
        out: like q; the output (any float dtype).
        lse: [B, H, L] / [N, H] fp32 log-sum-exp of every row (softmax), or None (pointwise).
        init: fp32 like q: resume the softmax from ``(init, lse)`` written by an earlier part. Default: None.
    """
    if q.numel() == 0:
        return
    blocks, options = _config(q)
    batch_heads = layout.lengths.shape[0] * q.shape[1]
    lse_arg = out if lse is None else lse
    tensors, scalars, flags = _common(q, layout, lse_arg, pos_bias, time_bias, part, scale)
    grid = _grid(layout, part, blocks["BLOCK_M"], batch_heads)
    attention_fwd_kernel[grid](q, k, v, out, lse_arg, out if init is None else init, *tensors, *scalars,
                               POINTWISE=pointwise, HAS_INIT=init is not None, **flags, **blocks, **options)


def backward(q: Tensor, k: Tensor, v: Tensor, do: Tensor, lse: Tensor | None, delta: Tensor | None,
             layout: Layout, pos_bias: Tensor | None, time_bias: Tensor | None, part: Part, scale: float, *,
             pointwise: bool, dq: Tensor, dk: Tensor, dv: Tensor, dpos: Tensor | None, dtime: Tensor | None,
             accumulate: bool = False) -> None:
    """Launch the two backward kernels of one part.

    Args:
        do: like q, contiguous.
        lse, delta: [B, H, L] / [N, H] fp32 (softmax: the final log-sum-exp and ``sum(do * out, -1)``), or
            None (pointwise).
        dq, dk, dv: like q; written, or added to when ``accumulate`` (then they must be fp32).
        dpos, dtime: fp32 [P] / [128] gradient accumulators of the bias tables, or None.
    """
    if q.numel() == 0:
        return
    blocks, options = _config(q)
    batch_heads = layout.lengths.shape[0] * q.shape[1]
    lse_arg = do if lse is None else lse
    delta_arg = do if delta is None else delta
    tensors, scalars, flags = _common(q, layout, lse_arg, pos_bias, time_bias, part, scale)
    shared = dict(POINTWISE=pointwise, ACCUMULATE=accumulate, **flags, **blocks, **options)
    grid = _grid(layout, part, blocks["BLOCK_M"], batch_heads)
    attention_bwd_dq_kernel[grid](q, k, v, do, lse_arg, delta_arg, dq, *tensors, *scalars, **shared)
    grid = _grid(layout, part, blocks["BLOCK_N"], batch_heads)
    attention_bwd_dkdv_kernel[grid](q, k, v, do, lse_arg, delta_arg, dk, dv, *tensors,
                                    q if dpos is None else dpos, q if dtime is None else dtime, *scalars,
                                    POS_GRAD=dpos is not None, TIME_GRAD=dtime is not None, **shared)
