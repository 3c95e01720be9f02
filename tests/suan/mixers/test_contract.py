"""The mixer contract, checked for every name in the registry (a new mixer is picked up automatically).

Layout: right-padded ``x [B, L, D]``, ``lengths [B]`` valid tokens of which the last ``num_targets [B]``
are candidates that see the whole history and themselves only; outputs at padded positions are zero.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

from suan.mixers.base import Mixer, MixerConfig, RecurrentMixer
from suan.mixers.registry import MIXERS, build_mixer, register

D_MODEL, HEADS, MAX_LEN = 16, 2, 32
# fp32: the same tokens computed in a different batch/padding, backends, onnxruntime vs eager
ATOL = 1e-5
RTOL = 1e-5
# gradients of a summed loss add up many terms
GRAD_ATOL = 1e-5
GRAD_RTOL = 1e-4

NAMES = sorted(MIXERS)
ISOLATING = [name for name in NAMES if MIXERS[name].candidate_isolation]
RECURRENT = [name for name in NAMES if MIXERS[name].recurrent]


def _build(name: str, backend: str = "torch", max_attn_len: int = 0, seed: int = 0) -> Mixer:
    """The mixer in eval mode, with every constant-initialised parameter (biases, norms) randomised."""
    cfg = MixerConfig(name=name, d_model=D_MODEL, num_heads=HEADS, max_len=MAX_LEN, max_attn_len=max_attn_len,
                      backend=backend)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mixer = build_mixer(cfg)
        with torch.no_grad():
            for p in mixer.parameters():
                if p.numel() > 0 and torch.all(p == p.flatten()[0]):
                    p.normal_(0.0, 0.5)
    return mixer.eval()


def _batch(lengths: list[int], targets: list[int], seq_len: int, seed: int = 0) -> dict[str, Tensor]:
    """Random tokens everywhere (padding holds garbage), increasing history times, candidates at one time."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    x = torch.randn(batch, seq_len, D_MODEL, generator=gen)
    steps = torch.randint(1, 10**5, (batch, seq_len), generator=gen)
    timestamps = 1_700_000_000 + steps.cumsum(dim=1)  # [B, L]
    for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
        # candidates carry the impression time: all equal, after the history
        timestamps[b, n - t:n] = timestamps[b, n - 1] if n else 0
    return dict(x=x, lengths=torch.tensor(lengths), num_targets=torch.tensor(targets), timestamps=timestamps)


def _run(mixer: Mixer, batch: dict[str, Tensor]) -> Tensor:
    return mixer(batch["x"], lengths=batch["lengths"], num_targets=batch["num_targets"],
                 timestamps=batch["timestamps"])


def _slice(batch: dict[str, Tensor], b: int, seq_len: int) -> dict[str, Tensor]:
    """Row ``b`` alone, cut to ``seq_len`` tokens."""
    return dict(x=batch["x"][b:b + 1, :seq_len], lengths=batch["lengths"][b:b + 1],
                num_targets=batch["num_targets"][b:b + 1], timestamps=batch["timestamps"][b:b + 1, :seq_len])


def _check_padding_zero(out: Tensor, lengths: Tensor) -> None:
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[b, n:] == 0), f"row {b}: output at padded positions is not exactly zero"


LENGTHS, TARGETS, SEQ_LEN = [9, 5, 1, 0, 7, 3], [2, 1, 1, 0, 0, 3], 11


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_zero_padding(name):
    batch = _batch(LENGTHS, TARGETS, SEQ_LEN)
    with torch.no_grad():
        out = _run(_build(name), batch)
    assert out.shape == (len(LENGTHS), SEQ_LEN, D_MODEL)
    assert torch.isfinite(out).all()
    _check_padding_zero(out, batch["lengths"])
    assert out[0, :9].abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_padded_batch_equals_each_sequence_alone(name):
    mixer = _build(name)
    batch = _batch(LENGTHS, TARGETS, SEQ_LEN, seed=1)
    with torch.no_grad():
        out = _run(mixer, batch)
        for b, n in enumerate(LENGTHS):
            if n == 0:
                continue
            alone = _run(mixer, _slice(batch, b, n))  # [1, n, D]
            torch.testing.assert_close(out[b, :n], alone[0], atol=ATOL, rtol=RTOL, msg=f"row {b}")


@pytest.mark.parametrize("name", NAMES)
def test_extra_right_padding_changes_nothing(name):
    mixer = _build(name)
    batch = _batch(LENGTHS, TARGETS, SEQ_LEN, seed=2)
    longer = _batch(LENGTHS, TARGETS, SEQ_LEN + 6, seed=3)
    # same valid tokens and times, different (garbage) padding
    for key in ("x", "timestamps"):
        longer[key][:, :SEQ_LEN] = batch[key]
    with torch.no_grad():
        out, out_long = _run(mixer, batch), _run(mixer, longer)
    _check_padding_zero(out_long, longer["lengths"])
    for b, n in enumerate(LENGTHS):
        torch.testing.assert_close(out_long[b, :n], out[b, :n], atol=ATOL, rtol=RTOL, msg=f"row {b}")


@pytest.mark.parametrize("name", NAMES)
def test_empty_and_length_one_rows(name):
    mixer = _build(name)
    for lengths, targets, seq_len in (([0, 1, 1, 0], [0, 0, 1, 0], 3), ([0, 0], [0, 0], 2), ([1], [1], 1)):
        batch = _batch(lengths, targets, seq_len, seed=4)
        x = batch["x"].requires_grad_(True)
        out = _run(mixer, batch)
        assert torch.isfinite(out).all(), f"lengths {lengths}"
        _check_padding_zero(out.detach(), batch["lengths"])
        out.sum().backward()
        assert torch.isfinite(x.grad).all(), f"lengths {lengths}"
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in mixer.parameters())
        mixer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", ISOLATING)
def test_candidates_are_isolated(name):
    mixer = _build(name)
    # row 0: 6 history tokens + 4 candidates; row 1: no history, 3 candidates
    lengths, targets, seq_len = [10, 3], [4, 3], 12
    batch = _batch(lengths, targets, seq_len, seed=5)
    with torch.no_grad():
        out = _run(mixer, batch)
        for b, (n, t) in enumerate(zip(lengths, targets, strict=True)):
            n_hist = n - t
            for c in range(n_hist, n):
                changed = {**batch, "x": batch["x"].clone()}
                changed["x"][b, c] += torch.randn(D_MODEL, generator=torch.Generator().manual_seed(c))
                out_changed = _run(mixer, changed)
                others = [i for i in range(n) if i != c]
                torch.testing.assert_close(out_changed[b, others], out[b, others], atol=ATOL, rtol=RTOL,
                                           msg=f"row {b}: changing candidate {c} moved another token")
                assert not torch.allclose(out_changed[b, c], out[b, c], atol=ATOL, rtol=RTOL)
                # history + this candidate alone, scored as the only target
                alone_idx = list(range(n_hist)) + [c]
                alone = dict(x=batch["x"][b:b + 1, alone_idx], lengths=torch.tensor([n_hist + 1]),
                             num_targets=torch.tensor([1]), timestamps=batch["timestamps"][b:b + 1, alone_idx])
                torch.testing.assert_close(_run(mixer, alone)[0], out[b, alone_idx], atol=ATOL, rtol=RTOL,
                                           msg=f"row {b}: candidate {c} scored alone")


def _outputs_and_grads(mixer: Mixer, batch: dict[str, Tensor], grad_out: Tensor):
    x = batch["x"].clone().requires_grad_(True)
    out = _run(mixer, {**batch, "x": x})
    (out * grad_out).sum().backward()
    grads = {name: p.grad for name, p in mixer.named_parameters()}
    return out.detach(), x.grad, grads


@pytest.mark.parametrize("max_attn_len", [0, 3])
@pytest.mark.parametrize("name", NAMES)
def test_torch_backend_matches_naive(name, max_attn_len):
    batch = _batch(LENGTHS, TARGETS, SEQ_LEN, seed=6)
    grad_out = torch.randn(len(LENGTHS), SEQ_LEN, D_MODEL, generator=torch.Generator().manual_seed(7))
    ref_out, ref_dx, ref_grads = _outputs_and_grads(_build(name, "naive", max_attn_len), batch, grad_out)
    out, dx, grads = _outputs_and_grads(_build(name, "torch", max_attn_len), batch, grad_out)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(dx, ref_dx, atol=GRAD_ATOL, rtol=GRAD_RTOL, msg="input gradient")
    assert grads.keys() == ref_grads.keys()
    for pname, grad in grads.items():
        assert grad is not None, f"{pname} got no gradient"
        torch.testing.assert_close(grad, ref_grads[pname], atol=GRAD_ATOL, rtol=GRAD_RTOL, msg=pname)


class _Wrapper(nn.Module):
    """Positional-tensor forward for the exporter."""

    def __init__(self, mixer: Mixer) -> None:
        super().__init__()
        self.mixer = mixer

    def forward(self, x: Tensor, lengths: Tensor, num_targets: Tensor, timestamps: Tensor) -> Tensor:
        return self.mixer(x, lengths=lengths, num_targets=num_targets, timestamps=timestamps)


@pytest.mark.integration
# exporter noise of torch 2.13 (pytree deprecation, dim renaming): not about our graph
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec:FutureWarning", "ignore:# The axis name:UserWarning")
@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_with_dynamic_batch_and_length(name, tmp_path):
    wrapper = _Wrapper(_build(name, "torch")).eval()
    example = _batch([9, 4, 0], [2, 1, 0], 9, seed=8)
    batch_dim = torch.export.Dim("batch", min=1, max=1024)
    seq_dim = torch.export.Dim("seq", min=1, max=MAX_LEN)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(wrapper, tuple(example.values()), path, dynamo=True, verbose=False,
                      input_names=list(example), output_names=["y"],
                      dynamic_shapes=({0: batch_dim, 1: seq_dim}, {0: batch_dim}, {0: batch_dim},
                                      {0: batch_dim, 1: seq_dim}))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # batch sizes and lengths (down to 1) unlike the example: a graph with a fixed B or L fails here
    for lengths, targets, seq_len in (([14, 1, 0, 7, 3], [3, 1, 0, 2, 0], 14), ([31, 20], [1, 5], 31),
                                     ([1, 0], [1, 0], 1)):
        batch = _batch(lengths, targets, seq_len, seed=seq_len)
        (got,) = session.run(None, {key: value.numpy() for key, value in batch.items()})
        with torch.no_grad():
            want = _run(wrapper.mixer, batch)
        torch.testing.assert_close(torch.from_numpy(got), want, atol=ATOL, rtol=0)


def _state_size(state: dict[str, Tensor]) -> int:
    return sum(t.numel() for t in state.values())


@pytest.mark.parametrize("max_attn_len", [0, 3])
@pytest.mark.parametrize("n_hist", [0, 1, 6])
@pytest.mark.parametrize("name", RECURRENT)
def test_incremental_equals_full_recompute(name, n_hist, max_attn_len):
    mixer = _build(name, max_attn_len=max_attn_len)
    assert isinstance(mixer, RecurrentMixer)
    n_cand, rows = 3, 2
    batch = _batch([n_hist + n_cand] * rows, [n_cand] * rows, n_hist + n_cand, seed=9)
    x, ts = batch["x"], batch["timestamps"]
    with torch.no_grad():
        full = _run(mixer, batch)
        state = mixer.init_state(rows)
        empty_size = _state_size(state)
        for t in range(n_hist):
            before = {key: value.clone() for key, value in state.items()}
            y, new_state = mixer.step(x[:, t], ts[:, t], state)
            assert all(torch.equal(before[key], state[key]) for key in before), "step changed its input state"
            state = new_state
            torch.testing.assert_close(y, full[:, t], atol=ATOL, rtol=RTOL, msg=f"history token {t}")
            if not type(mixer).state_grows:
                assert _state_size(state) == empty_size, "the state grew with the history"
        cands = mixer.score_candidates(x[:, n_hist:], ts[:, n_hist:], state)
        torch.testing.assert_close(cands, full[:, n_hist:], atol=ATOL, rtol=RTOL, msg="candidates")
        # scoring one candidate alone from the same state gives the same output
        one = mixer.score_candidates(x[:, -1:], ts[:, -1:], state)
        torch.testing.assert_close(one[:, 0], full[:, -1], atol=ATOL, rtol=RTOL, msg="candidate alone")


def test_recurrent_registration_needs_the_protocol():
    with pytest.raises(TypeError, match="lacks"):
        register("_no_recurrent_form", Mixer, "a mixer without init_state/step/score_candidates", recurrent=True)
    assert "_no_recurrent_form" not in MIXERS


# float64 end to end: the same math in another order agrees to rounding, not to fp32's 1e-5. Fails where an op
# rounds a float64 input to float32 on the way (``.float()``), which would hide a real 1e-6 discrepancy.
ATOL_F64 = 1e-10
RTOL_F64 = 1e-9


def _as_f64(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {**batch, "x": batch["x"].double()}


@pytest.mark.parametrize("name", NAMES)
def test_float64_in_float64_out_and_backends_agree_to_rounding(name):
    batch = _as_f64(_batch(LENGTHS, TARGETS, SEQ_LEN, seed=6))
    grad_out = torch.randn(len(LENGTHS), SEQ_LEN, D_MODEL, generator=torch.Generator().manual_seed(7)).double()
    ref_out, ref_dx, ref_grads = _outputs_and_grads(_build(name, "naive").double(), batch, grad_out)
    out, dx, grads = _outputs_and_grads(_build(name, "torch").double(), batch, grad_out)
    assert out.dtype == ref_out.dtype == dx.dtype == torch.float64
    torch.testing.assert_close(out, ref_out, atol=ATOL_F64, rtol=RTOL_F64)
    torch.testing.assert_close(dx, ref_dx, atol=ATOL_F64, rtol=RTOL_F64, msg="input gradient")
    for pname, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[pname], atol=ATOL_F64, rtol=RTOL_F64, msg=pname)


@pytest.mark.parametrize("name", NAMES)
def test_float64_padded_batch_equals_each_sequence_alone_to_rounding(name):
    mixer = _build(name).double()
    batch = _as_f64(_batch(LENGTHS, TARGETS, SEQ_LEN, seed=1))
    with torch.no_grad():
        out = _run(mixer, batch)
        for b, n in enumerate(LENGTHS):
            if n:
                alone = _run(mixer, _slice(batch, b, n))  # [1, n, D]
                torch.testing.assert_close(out[b, :n], alone[0], atol=ATOL_F64, rtol=RTOL_F64, msg=f"row {b}")


@pytest.mark.parametrize("name", RECURRENT)
def test_float64_incremental_equals_full_recompute_to_rounding(name):
    mixer = _build(name).double()
    n_hist, n_cand, rows = 6, 3, 2
    batch = _as_f64(_batch([n_hist + n_cand] * rows, [n_cand] * rows, n_hist + n_cand, seed=9))
    x, ts = batch["x"], batch["timestamps"]
    with torch.no_grad():
        full = _run(mixer, batch)
        state = mixer.init_state(rows)
        for t in range(n_hist):
            y, state = mixer.step(x[:, t], ts[:, t], state)
            torch.testing.assert_close(y, full[:, t], atol=ATOL_F64, rtol=RTOL_F64, msg=f"history token {t}")
        cands = mixer.score_candidates(x[:, n_hist:], ts[:, n_hist:], state)
        torch.testing.assert_close(cands, full[:, n_hist:], atol=ATOL_F64, rtol=RTOL_F64, msg="candidates")
