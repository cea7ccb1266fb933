"""Small pure torch functions the FM synth is made of (DDSP's ``core`` style).

Shapes: ``B`` batch, ``T`` frames, ``N = T * hop`` samples, 6 operators (index 0 = OP1).
Units: frequencies in Hz, phases in cycles unless a name says radians, amplitudes in DX7 units
(1.0 = output level 99 with the EG at 99, :mod:`dx7tools.levels`).
"""

from __future__ import annotations

import math
from typing import Iterable

import numba
import numpy as np
import torch

from dx7tools.algorithms import Algorithm
from dx7tools.frequency import DETUNE_DECAY, DETUNE_SCALE, FIXED_DETUNE_OCTAVES

from ddx7.synth.feedback import FOUR_PI, feedback_chain

PHASE_BITS = 40
"""Frame-start phases are 40-bit fixed point (int64 modulo 2^40): exact sums, so no drift; the
rounding of each frame's advance (< 2^-41 cycle) leaves a frequency error below 1e-9 Hz."""
_PHASE_ONE = 1 << PHASE_BITS


def upsample_causal(frames: torch.Tensor, previous: torch.Tensor, hop: int) -> torch.Tensor:
    """Frame rate -> sample rate by linear interpolation that only looks back.

    Within frame ``k`` the value ramps from frame ``k-1``'s value to frame ``k``'s, reaching it
    on the frame's last sample, so a block needs only the previous frame (streaming state) and
    the result of a block equals the same samples of the whole input exactly.

    Args:
        frames: (B, C, T) values per frame (channels first).
        previous: (B, C) the value of the frame before the first (e.g. ``frames[..., 0]``).
        hop: samples per frame.

    Returns:
        (B, C, T * hop).
    """
    b, c, t = frames.shape
    before = torch.cat([previous[..., None].to(frames.dtype), frames[..., :-1]], dim=-1)
    w = torch.arange(1, hop + 1, dtype=frames.dtype, device=frames.device) / hop
    return (before[..., None] + (frames - before)[..., None] * w).reshape(b, c, t * hop)


def operator_frequencies(f0: torch.Tensor, ratio: torch.Tensor, fixed_hz: torch.Tensor,
                         is_fixed: torch.Tensor, detune_steps: torch.Tensor) -> torch.Tensor:
    """Operator frequencies in Hz, detune as Dexed applies it (:mod:`dx7tools.frequency`).

    Args:
        f0: (...) fundamental in Hz (0 = unvoiced: ratio operators get 0 Hz).
        ratio, fixed_hz, detune_steps: (6,) per operator (detune_steps = DETUNE - 7).
        is_fixed: (6,) bool.

    Returns:
        (..., 6) Hz, same dtype as ``f0``.
    """
    f = f0[..., None]
    log_f0 = torch.log2(f.clamp_min(1e-3))
    steps = detune_steps.to(f.dtype)
    ratio_hz = f * ratio.to(f.dtype) * torch.exp2(DETUNE_SCALE * torch.exp(-DETUNE_DECAY * log_f0) * log_f0 * steps)
    fixed = fixed_hz.to(f.dtype) * torch.exp2(FIXED_DETUNE_OCTAVES * steps.clamp_min(0.0))
    return torch.where(is_fixed, fixed.expand_as(ratio_hz), ratio_hz)


def accumulate_phase(freq_hz: torch.Tensor, previous_hz: torch.Tensor, sample_rate: float, hop: int,
                     start: torch.Tensor, dtype: torch.dtype = torch.float32):
    """Running phase of oscillators whose frequency is interpolated like :func:`upsample_causal`.

    Within frame ``k`` the frequency ramps linearly from frame ``k-1``'s to frame ``k``'s, so the
    phase at sample ``j`` of the frame has a closed form (an arithmetic series) from the phase at
    the frame's start. Frame starts are accumulated in 40-bit fixed point (int64 modulo 2^40):
    exact, so hours of audio do not drift and any split into blocks gives the same phases bit
    for bit. Only the offsets within a frame
    (at most ``hop`` samples) are floating point, in float64.

    Args:
        freq_hz: (B, C, T) frequency per frame (Hz, float64 recommended).
        previous_hz: (B, C) frequency of the frame before the first.
        sample_rate: Hz; hop: samples per frame.
        start: (B, C) int64 phase before the first sample (units of 2^-40 cycle; 0 at note-on).
        dtype: of the returned phase.

    Returns:
        ``(phase, end)``: phase (B, C, T * hop) in cycles in [0, 1) at each sample (the first
        sample has ``start``), and the int64 phase after the last sample.
    """
    b, c, t = freq_hz.shape
    cur = freq_hz.double() / sample_rate  # cycles per sample
    before = torch.cat([previous_hz[..., None].double() / sample_rate, cur[..., :-1]], dim=-1)
    slope = cur - before
    # phase advance over j samples: j * before + slope * j (j + 1) / (2 hop)
    j = torch.arange(hop + 1, dtype=torch.float64, device=cur.device)
    ramp = j * (j + 1) / (2.0 * hop)
    # wrapped before summing, so that 2^23 frames (9 hours at 250/s) fit in one int64 cumsum
    total = torch.bitwise_and(torch.round((hop * before + slope * ramp[hop]) * _PHASE_ONE).to(torch.int64),
                              _PHASE_ONE - 1)
    ends = torch.cumsum(total, dim=-1)
    frame_start = torch.bitwise_and(start[..., None] + ends - total, _PHASE_ONE - 1).double() / _PHASE_ONE
    end = torch.bitwise_and(start + ends[..., -1], _PHASE_ONE - 1)
    if cur.device.type == "cpu":
        out = np.empty((b, c, t * hop), dtype=torch.empty(0, dtype=dtype).numpy().dtype)
        _phase_samples(frame_start.numpy(), before.contiguous().numpy(), slope.contiguous().numpy(),
                       ramp[:hop].numpy(), out)
        return torch.from_numpy(out), end
    phase = frame_start[..., None] + before[..., None] * j[:hop] + slope[..., None] * ramp[:hop]
    phase = (phase - torch.floor(phase)).reshape(b, c, t * hop)
    return phase.to(dtype), end


@numba.njit(cache=True, nogil=True)
def _phase_samples(frame_start, before, slope, ramp, out):  # pragma: no cover - compiled
    """The per-sample part of :func:`accumulate_phase` in one pass (the same float64 arithmetic,
    without its full-size temporaries): ``frac(start + before * j + slope * ramp[j])``."""
    batch, chans, frames = frame_start.shape
    hop = ramp.shape[0]
    for b in range(batch):
        for c in range(chans):
            for f in range(frames):
                fs, be, sl = frame_start[b, c, f], before[b, c, f], slope[b, c, f]
                base = f * hop
                for j in range(hop):
                    p = fs + be * j + sl * ramp[j]
                    out[b, c, base + j] = p - math.floor(p)


def antialias_gain(freq_hz: torch.Tensor, sample_rate: float, fade_start: float = 0.45) -> torch.Tensor:
    """Gain that mutes operators approaching Nyquist: 1 below ``fade_start * fs``, 0 at fs / 2.

    A sine above Nyquist folds back to an unrelated frequency, and as a modulator it would bend
    its carrier with that wrong frequency; fading it out (linearly over the top 10 % of the
    band by default) keeps the partials that would fold badly out of the output.
    """
    nyq = 0.5 * sample_rate
    width = nyq - fade_start * sample_rate
    return ((nyq - freq_hz) / width).clamp(0.0, 1.0)


def fm_operators(phase: torch.Tensor, amp: torch.Tensor, algorithm: Algorithm,
                 beta: torch.Tensor, memory: torch.Tensor, silent: Iterable[int] = ()):
    """Six DX7 operators wired as ``algorithm``: the one core function every render goes through.

    Operator ``k`` outputs ``amp_k * sin(2 pi phase_k + 4 pi * sum(y_j for j modulating k))``,
    computed in the algorithm's render order (modulators first); the feedback loop, if any, runs
    in :func:`ddx7.synth.feedback.feedback_chain`.

    Args:
        phase: (B, 6, N) accumulated phase in cycles.
        amp: (B, 6, N) amplitude per operator and sample (1.0 = output level 99).
        algorithm: a :class:`dx7tools.algorithms.Algorithm`.
        beta: (B,) feedback gain, radians per unit amplitude (0 = no feedback).
        memory: (B, 2) the feedback source's last two outputs before this block.
        silent: operators (1-6) whose ``amp`` is 0 over the whole block for every batch item: their
            output is 0 without computing it (ignored when ``amp`` needs a gradient).

    Returns:
        ``(outputs, memory)``: outputs (B, 6, N) of every operator, memory (B, 2) for the next
        block.
    """
    chain = feedback_loop(algorithm)
    outs: dict[int, torch.Tensor] = {}

    def theta(op: int, skip: tuple[int, ...] = ()) -> torch.Tensor:
        """Phase of ``op`` in radians: its accumulator plus its (already rendered) modulators."""
        out = (2.0 * math.pi) * phase[:, op - 1]
        for j in algorithm.modulators_of(op):
            if j not in skip:
                out = out + FOUR_PI * outs[j]
        return out

    # With no feedback (and none to learn) the loop is an ordinary chain: skip the serial kernel.
    looped = beta.requires_grad or bool((beta != 0).any())
    silent = set() if amp.requires_grad else set(silent)
    for op in algorithm.render_order:
        if op in outs:
            continue
        if op in silent and op not in chain:
            outs[op] = torch.zeros_like(amp[:, op - 1])
            continue
        if op != chain[0] or not looped:
            outs[op] = amp[:, op - 1] * torch.sin(theta(op))
            continue
        y = feedback_chain(torch.stack([theta(k, skip=chain) for k in chain], 1),
                           amp[:, [k - 1 for k in chain]], beta, memory)
        outs.update({k: y[:, i] for i, k in enumerate(chain)})
    tail = outs[chain[-1]].detach()
    previous = tail[:, -2] if tail.shape[-1] >= 2 else memory[:, 0].to(tail.dtype)
    return torch.stack([outs[k] for k in range(1, 7)], 1), torch.stack([tail[:, -1], previous], 1)


def feedback_loop(algorithm: Algorithm) -> tuple[int, ...]:
    """Operators of the feedback loop in signal order: receiver first, fed-back operator last.

    ``(6,)`` for a self-loop on OP6; ``(6, 5, 4)`` for algorithm 4 (OP4 feeds OP6).
    """
    src, dst = algorithm.feedback
    chain = [dst]
    while chain[-1] != src:
        nxt = [t for t in algorithm.targets_of(chain[-1])]
        if len(nxt) != 1 or len(chain) > 6:
            raise ValueError(f"algorithm {algorithm.number}: feedback {src}->{dst} is not a simple chain")
        chain.append(nxt[0])
    order = algorithm.render_order
    for k in chain[1:]:
        for j in algorithm.modulators_of(k):
            if j not in chain and order.index(j) > order.index(chain[0]):
                raise ValueError(f"algorithm {algorithm.number}: OP{j} would be needed inside the feedback loop")
    return tuple(chain)
