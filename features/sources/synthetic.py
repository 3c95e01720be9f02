"""The embedded default: a synthetic behaviour log with a planted, learnable click model.

Users have a profile (age, gender, region) and three interest categories that drift over time
(each event, with probability ``drift`` one slot is redrawn). Exposure follows the current
interests (70%) or global category mass (30%), then item popularity within the category. The
planted click probability is

    logit = bias + w_aff * affinity(target, recent history) + age[a, c] + gender[g, c]
            + device[d, c] + quality[i] + 0.4 * cos(2π (hour - 20) / 24)

where ``affinity`` is the recency-weighted (exp(-Δt / tau)) share of past behaviours in the target's
category or its neighbours, clicks counting 1 and views 0.25.

``difficulty`` > 0 plants structure that needs capacity, beside the category-level terms above:

    logit += d * (2.0 * follows(target, last clicked item)       item-to-item transitions (I x 2 pairs)
                  + 1.0 * [same category as the previous event and gap < 30 min]   order and time gap
                  + gain[age, gender] * w_aff * affinity)        profile x behaviour interaction

with a share 0.15·d of exposures drawn from the last clicked item's two follow-ups, so the pairs are
seen often enough to be learnt. d = 0 is the plain world. The transition relation is random (full rank):
an item embedding of width e holds about e / items of it, so every grade in reach misses nearly all of
it alike (measured: no size law on that world, docs/RESULTS.md).

``taste_weight`` w > 0 plants structure with a power-law spectrum, the kind a size law comes from: every
item has a latent taste vector z_i ~ N(0, I_K), and

    logit += w * sum_k lam_k * h_k * z_target,k,   h = sum of z_j over the clicks among the last 10 events / (n + 1)

with lam_k ∝ k^(-taste_decay) (sum of lam_k^2 = 1). A model whose item embedding has width e can hold
at most the top e directions, so the share of the term it misses falls as a power of e (about
e^(1 - 2 taste_decay) for K >> e): wider grades keep gaining, and more rows let them learn weaker
directions. Everything a model needs is in the
features (history with actions and timestamps, profile, device, hour, item id), so the AUC of the
true probabilities is the Bayes ceiling; a sequence-blind model cannot see the recency effect.

Generation runs in blocks of users, vectorised over the users of a block and looped over their
event index, and streams each block to a Parquet part, so 10^8 events never sit in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from features.atomic import atomic_dir
from features.rawlog import RawLog
from suan.utils.config import Config, require
from suan.utils.provenance import provenance

N_AGE, N_GENDER, N_REGION, N_DEVICE, N_SLOTS = 5, 2, 8, 3, 3
TASTE_WINDOW = 10  # events whose clicks make up the taste vector h (inside every grade's L of 20 or more)
# item-embedding widths whose ceiling the summary reports (the grade table's 4 ... 192 and beyond)
CEILING_WIDTHS = (0, 4, 6, 10, 16, 32, 48, 64, 96, 128, 192, 256, 512, 1024)
EPOCH_START = 1_704_067_200  # 2024-01-01 00:00:00 UTC


@dataclass(frozen=True, kw_only=True, slots=True)
class SynthConfig(Config):
    """Size and planted structure of the synthetic log.

    Args:
        users: number of users. Default: 2000.
        items: number of items. Default: 1000.
        categories: number of item categories. Default: 20.
        events_per_user: mean events per user (log-normal spread, min 2). Default: 40.
        seed: everything is deterministic given the seed. Default: 0.
        affinity_weight: weight of the history affinity in the click logit. Default: 4.0.
        recency_hours: decay time constant tau of the affinity. Default: 6.
        drift: per-event probability that one interest slot is redrawn. Default: 0.1.
        difficulty: weight of the capacity-hungry structure (item-to-item transitions, order and time-gap
            effects, profile x behaviour interactions); 0 = the plain category-level world. Default: 0.
        taste_weight: weight w of the latent-taste term with a power-law spectrum (0 = off). Default: 0.
        taste_dims: latent taste dimensions K. Default: 256.
        taste_decay: spectrum exponent a, lam_k ∝ k^(-a); the missed share falls about as e^(1 - 2a) with the
            embedding width e, so a must exceed 0.5. Default: 0.75.
        block_users: users generated (and held in memory) at once. Default: 20000.
    """

    users: int = 2000
    items: int = 1000
    categories: int = 20
    events_per_user: int = 40
    seed: int = 0
    affinity_weight: float = 4.0
    recency_hours: float = 6.0
    drift: float = 0.1
    difficulty: float = 0.0
    taste_weight: float = 0.0
    taste_dims: int = 256
    taste_decay: float = 0.75
    block_users: int = 20000

    def validate(self) -> None:
        require(self.users >= 2, "users must be >= 2")
        require(self.categories >= 2, "categories must be >= 2")
        require(self.items >= self.categories, "items must be >= categories")
        require(self.events_per_user >= 2, "events_per_user must be >= 2")
        require(self.recency_hours > 0, "recency_hours must be > 0")
        require(0 <= self.drift <= 1, "drift must be in [0, 1]")
        require(0 <= self.difficulty <= 4, "difficulty must be in [0, 4]")
        require(0 <= self.taste_weight <= 20, "taste_weight must be in [0, 20]")
        require(1 <= self.taste_dims <= 4096, "taste_dims must be in [1, 4096]")
        require(self.taste_decay > 0.5, "taste_decay must be > 0.5 (at 0.5 or below the spectrum is not summable)")
        require(self.block_users >= 1, "block_users must be >= 1")


@dataclass(frozen=True)
class World:
    """Fixed parameters of the planted model, drawn once from the seed."""

    item_cate: np.ndarray  # [I]
    item_pop: np.ndarray  # [I] exposure weight within a category
    item_quality: np.ndarray  # [I] additive logit
    cate_mass: np.ndarray  # [C] global category exposure
    cate_sim: np.ndarray  # [C, C] which past categories count toward a target category
    age_pref: np.ndarray  # [N_AGE, C]
    gender_pref: np.ndarray  # [N_GENDER, C]
    device_pref: np.ndarray  # [N_DEVICE, C]
    age_interest: np.ndarray  # [N_AGE, C] prior of interest slots by age
    bias: float
    follow_ups: np.ndarray  # [I, 2] items that follow a click on item i (difficulty > 0)
    affinity_gain: np.ndarray  # [N_AGE, N_GENDER] profile x behaviour interaction (difficulty > 0)
    taste: np.ndarray  # [I, K] latent taste z_i scaled by sqrt(lam_k) on both sides of the bilinear term


def make_world(cfg: SynthConfig) -> World:
    rng = np.random.default_rng([cfg.seed, 1])
    c = cfg.categories
    item_cate = np.concatenate([np.arange(c), rng.integers(0, c, cfg.items - c)])
    sim = np.eye(c) + 0.4 * (np.eye(c, k=1) + np.eye(c, k=-1)) + 0.4 * (np.eye(c, k=c - 1) + np.eye(c, k=1 - c))
    age_interest = rng.dirichlet(np.full(c, 0.5), size=N_AGE)
    return World(
        item_cate=item_cate,
        item_pop=rng.lognormal(0.0, 1.0, cfg.items),
        item_quality=rng.normal(0.0, 0.5, cfg.items),
        cate_mass=rng.dirichlet(np.full(c, 2.0)),
        cate_sim=np.minimum(sim, 1.0),
        age_pref=rng.normal(0.0, 0.5, (N_AGE, c)),
        gender_pref=rng.normal(0.0, 0.4, (N_GENDER, c)),
        device_pref=rng.normal(0.0, 0.3, (N_DEVICE, c)),
        age_interest=age_interest,
        bias=-1.9,
        # drawn from their own stream so that difficulty 0 reproduces the plain world exactly
        follow_ups=np.random.default_rng([cfg.seed, 3]).integers(0, cfg.items, (cfg.items, 2)),
        affinity_gain=np.random.default_rng([cfg.seed, 4]).uniform(-0.6, 0.6, (N_AGE, N_GENDER)),
        taste=_taste(cfg),
    )


def _taste(cfg: SynthConfig) -> np.ndarray:
    """z_i * sqrt(lam) [I, K], so that <h, z_target> over these rows is the spectrum-weighted bilinear term."""
    lam = np.arange(1, cfg.taste_dims + 1, dtype=np.float64) ** -cfg.taste_decay
    lam /= np.sqrt((lam**2).sum())  # sum lam_k^2 = 1: the term's variance does not depend on K or a
    z = np.random.default_rng([cfg.seed, 5]).standard_normal((cfg.items, cfg.taste_dims))
    return z * np.sqrt(lam)


class _ItemSampler:
    """Draws an item of a given category with probability proportional to popularity."""

    def __init__(self, world: World) -> None:
        self.order = np.argsort(world.item_cate, kind="stable")  # items grouped by category
        pop = world.item_pop[self.order]
        self.cum = np.cumsum(pop)
        cates = world.item_cate[self.order]
        self.hi = np.searchsorted(cates, np.arange(len(world.cate_mass)), side="right") - 1
        lo_idx = np.searchsorted(cates, np.arange(len(world.cate_mass)), side="left")
        self.lo_mass = np.where(lo_idx > 0, self.cum[np.maximum(lo_idx - 1, 0)], 0.0)
        self.mass = self.cum[self.hi] - self.lo_mass

    def draw(self, rng: np.random.Generator, cate: np.ndarray) -> np.ndarray:
        target = self.lo_mass[cate] + rng.random(len(cate)) * self.mass[cate]
        pos = np.minimum(np.searchsorted(self.cum, target, side="right"), self.hi[cate])
        return self.order[pos]


def _block(cfg: SynthConfig, world: World, sampler: _ItemSampler, first_user: int, n_users: int) -> dict:
    """Simulate ``n_users`` users; returns per-event columns in (user, time) order and profiles."""
    rng = np.random.default_rng([cfg.seed, 2, first_user])
    c = cfg.categories
    n_ev = np.maximum(2, np.round(cfg.events_per_user * rng.lognormal(-0.18, 0.6, n_users))).astype(np.int64)
    n_ev = np.minimum(n_ev, 20 * cfg.events_per_user)
    age, gender = rng.integers(0, N_AGE, n_users), rng.integers(0, N_GENDER, n_users)
    region, main_device = rng.integers(0, N_REGION, n_users), rng.integers(0, N_DEVICE, n_users)
    slots = _draw_interest(rng, world.age_interest[np.repeat(age, N_SLOTS)]).reshape(n_users, N_SLOTS)
    # users sorted by event count (descending) so the users still active at step t are a prefix
    by_len = np.argsort(-n_ev, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(n_ev)])
    cols = {k: np.empty(offsets[-1], dtype=d) for k, d in
            (("item", np.int64), ("ts", np.int64), ("device", np.int8), ("label", np.int8), ("p", np.float32))}
    aff_num, aff_den = np.zeros((n_users, c)), np.zeros(n_users)
    ts = EPOCH_START + rng.integers(0, 60 * 86400, n_users)
    tau = cfg.recency_hours * 3600.0
    d = cfg.difficulty
    # per user: last clicked item (-1 none), previous event's category (-1 none), gap to it in seconds
    last_click, prev_cate = np.full(n_users, -1), np.full(n_users, -1)
    gap_s = np.zeros(n_users)
    # taste: the clicked items among the last TASTE_WINDOW events (a ring indexed by t, -1 = none clicked)
    # and the running sum of their taste vectors, so each step costs O(users x K), not O(users x W x K)
    taste_on = cfg.taste_weight > 0
    widths = [e for e in CEILING_WIDTHS if e < cfg.taste_dims] if taste_on else []
    loss = np.zeros(len(widths) + 1)  # summed logloss of the click probability without directions > e, then all
    recent_click = np.full((n_users, TASTE_WINDOW) if taste_on else (0, 0), -1)
    h_sum = np.zeros((n_users, cfg.taste_dims) if taste_on else (0, 0))
    for t in range(int(n_ev.max())):
        act = by_len[: int((n_ev > t).sum())]  # users with more than t events: a prefix of by_len
        k = len(act)
        if t > 0:
            short = rng.random(k) < 0.75
            gap = np.where(short, rng.exponential(600.0, k), rng.exponential(2 * 86400.0, k))
            ts[act] += 1 + gap.astype(np.int64)
            gap_s[act] = 1 + gap
            decay = np.exp(-(1 + gap) / tau)
            aff_num[act] *= decay[:, None]
            aff_den[act] *= decay
        redraw = rng.random(k) < cfg.drift
        if redraw.any():
            who = act[redraw]
            slots[who, rng.integers(0, N_SLOTS, len(who))] = _draw_interest(rng, world.age_interest[age[who]])
        from_slot = rng.random(k) < 0.7
        cate = np.where(from_slot, slots[act, rng.integers(0, N_SLOTS, k)], rng.choice(c, k, p=world.cate_mass))
        item = sampler.draw(rng, cate)
        if d > 0:
            follow = (rng.random(k) < 0.15 * d) & (last_click[act] >= 0)
            picked = world.follow_ups[np.maximum(last_click[act], 0), rng.integers(0, 2, k)]
            item = np.where(follow, picked, item)
            cate = np.where(follow, world.item_cate[item], cate)
        device = np.where(rng.random(k) < 0.8, main_device[act], rng.integers(0, N_DEVICE, k))
        affinity = (aff_num[act] * world.cate_sim[cate]).sum(1) / (aff_den[act] + 0.5)
        hour = (ts[act] // 3600) % 24
        logit = (world.bias + cfg.affinity_weight * affinity + world.age_pref[age[act], cate]
                 + world.gender_pref[gender[act], cate] + world.device_pref[device, cate]
                 + world.item_quality[item] + 0.4 * np.cos(2 * np.pi * (hour - 20) / 24))
        if d > 0:
            follows = (world.follow_ups[np.maximum(last_click[act], 0)] == item[:, None]).any(1) & (last_click[act] >= 0)
            session = (prev_cate[act] == cate) & (gap_s[act] < 1800)
            gain = world.affinity_gain[age[act], gender[act]]
            logit = logit + d * (2.0 * follows + 1.0 * session + gain * cfg.affinity_weight * affinity)
        if taste_on:
            n_clicks = (recent_click[act] >= 0).sum(1)
            h = h_sum[act] / (n_clicks + 1.0)[:, None]  # [k, K]
            # [k, K + 1]: column e is the term with directions 1..e kept (column 0: none, column K: all)
            by_dim = np.concatenate([np.zeros((k, 1)), cfg.taste_weight * np.cumsum(h * world.taste[item], 1)], 1)
            logit = logit + by_dim[:, -1]
        p = 1.0 / (1.0 + np.exp(-logit))
        label = rng.random(k) < p
        if taste_on:  # what a model holding only the top e directions could predict at best (uncalibrated)
            partial = logit[:, None] - by_dim[:, -1:] + by_dim[:, [*widths, cfg.taste_dims]]  # [k, widths + 1]
            loss += np.logaddexp(0.0, np.where(label[:, None], -partial, partial)).sum(0)
        last_click[act] = np.where(label, item, last_click[act])
        prev_cate[act] = cate
        if taste_on:  # event t - W leaves the window, event t enters it
            slot = t % TASTE_WINDOW
            leaving = recent_click[act, slot]
            h_sum[act] -= np.where(leaving[:, None] >= 0, world.taste[np.maximum(leaving, 0)], 0.0)
            h_sum[act] += np.where(label[:, None], world.taste[item], 0.0)
            recent_click[act, slot] = np.where(label, item, -1)
        aff_num[act, cate] += np.where(label, 1.0, 0.25)
        aff_den[act] += 1.0
        at = offsets[act] + t
        cols["item"][at], cols["ts"][at], cols["device"][at] = item, ts[act], device
        cols["label"][at], cols["p"][at] = label, p
    user_ids = np.repeat(np.arange(first_user, first_user + n_users), n_ev)
    return {"events": cols, "user": user_ids, "age": age, "gender": gender, "region": region,
            "taste_loss": dict(zip([*map(str, widths), "oracle"], loss.tolist(), strict=True)) if taste_on else {}}


def _draw_interest(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of ``probs`` [K, C] (inverse-CDF sampling)."""
    u = rng.random((len(probs), 1))
    return np.minimum((np.cumsum(probs, axis=1) < u).sum(1), probs.shape[1] - 1)


def generate(cfg: SynthConfig, out: str | Path, progress: bool = True) -> dict:
    """Write ``events/part-*.parquet``, ``users.parquet``, ``items.parquet`` and ``synth.json``.

    Returns:
        A summary: events, users, items and click rate; with the taste term on, ``taste_ceiling_logloss``: the
        mean logloss over all events of the true click probability with only the top e taste directions kept
        (e = 0, 4, 6, ... and "oracle" = all): what an item embedding of width e could reach at most with
        unlimited rows, so a sweep's grades can be read against their own ceilings.
    """
    world = make_world(cfg)
    sampler = _ItemSampler(world)
    n_events, n_clicks, profiles, taste_loss = 0, 0, [], {}
    with atomic_dir(out) as tmp:
        (tmp / "events").mkdir()
        starts = range(0, cfg.users, cfg.block_users)
        for part, first in enumerate(tqdm(starts, desc="synth blocks", disable=not progress)):
            blk = _block(cfg, world, sampler, first, min(cfg.block_users, cfg.users - first))
            ev = blk["events"]
            table = pa.table({
                "user_id": blk["user"], "item_id": ev["item"], "cate_id": world.item_cate[ev["item"]],
                "timestamp": ev["ts"], "device": ev["device"], "label": ev["label"], "p_true": ev["p"],
            })
            pq.write_table(table, tmp / "events" / f"part-{part:05d}.parquet", row_group_size=1 << 18)
            n_events += len(ev["item"])
            n_clicks += int(ev["label"].sum())
            taste_loss = {k: taste_loss.get(k, 0.0) + v for k, v in blk["taste_loss"].items()}
            profiles.append(pl.DataFrame({"user_id": np.arange(first, first + len(blk["age"])),
                                          "age": blk["age"], "gender": blk["gender"], "region": blk["region"]}))
        pl.concat(profiles).write_parquet(tmp / "users.parquet")
        pl.DataFrame({"item_id": np.arange(cfg.items), "cate_id": world.item_cate,
                      "popularity": world.item_pop, "quality": world.item_quality}).write_parquet(tmp / "items.parquet")
        summary = {"events": n_events, "users": cfg.users, "items": cfg.items,
                   "click_rate": n_clicks / max(n_events, 1)}
        if taste_loss:
            summary["taste_ceiling_logloss"] = {k: round(v / max(n_events, 1), 5) for k, v in taste_loss.items()}
        meta = {"config": cfg.to_dict(), "summary": summary, **provenance()}
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    return summary


def load_synthetic(root: str | Path) -> RawLog:
    """Read a generated folder as a :class:`RawLog` (``p_true`` kept as the oracle, not a feature)."""
    root = Path(root)
    from features.sources.events import read_table

    ev = read_table(root / "events")
    events = pl.DataFrame({
        "user": ev["user_id"], "item": ev["item_id"], "ts": ev["timestamp"].cast(pl.Int64),
        "row": pl.int_range(ev.height, eager=True, dtype=pl.Int64), "label": ev["label"].cast(pl.Int8),
        "cate_id": ev["cate_id"], "action": ev["label"].replace_strict([0, 1], ["view", "click"]),
        "device": ev["device"], "p_true": ev["p_true"],
    })
    users = pl.read_parquet(root / "users.parquet").rename({"user_id": "user"})
    items = pl.read_parquet(root / "items.parquet").select(pl.col("item_id").alias("item"), "cate_id")
    return RawLog(
        name="synthetic", events=events, item_fields=("cate_id",), event_fields=("action",),
        context_fields=("device",), users=users, user_fields=("age", "gender", "region"),
        items=items, oracle="p_true",
    )
