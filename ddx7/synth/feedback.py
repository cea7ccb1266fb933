"""Operator feedback as the DX7 computes it, sample by sample, with an exact gradient.

The DX7 feeds the output of one operator back into the phase of an operator upstream of it,
one sample late and averaged over the last two samples (which tames the oscillation)::

    y_src[n] = ... chain ... ( a_dst[n] * sin(theta_dst[n] + beta * (y_src[n-1] + y_src[n-2]) / 2) )

``beta = pi * 2 ** (feedback - 6)`` radians per unit of amplitude (0 for feedback 0), i.e.
2 pi at feedback 7, and a quarter of that in algorithms 4, 6 and 32 (:data:`FEEDBACK_SCALE`).
Both were measured on Dexed (dexed-py 0.3.0, Mark I engine, its default): a self-modulating
operator at output level 99, MIDI 60, 16 kHz, fitted by its 2nd-5th harmonic levels against
this recurrence, gives ``beta / (pi * 2 ** (feedback - 6))`` = 1.000 (feedback 5, 6) in
algorithms 1, 2, 3, 5, 7, 16, 18 and 31, and 0.250 in algorithm 32, harmonics within 0.01 dB.
The loops of algorithms 4 and 6 match Dexed's per-operator outputs best at 1/4 too (0.05-0.4 dB
spectral distance at feedback 3-6 for algorithm 6). Dexed reduced algorithm 32 on purpose (its
pull request 331: full-strength feedback 7 there turned into digital noise, unlike the owner's
DX7 Mk I); we follow Dexed, our only reference.

In most algorithms the loop is one operator feeding itself. In algorithms 4 and 6 it spans a
chain (4: OP6 -> OP5 -> OP4 -> back into OP6; 6: OP6 -> OP5 -> back into OP6), so the kernel runs a
chain of ``L`` operators per sample: ``chain[0]`` receives the feedback, each next operator is
modulated by the previous one (4 pi per unit of amplitude, the DX7's modulation scale) and the
last one's output is fed back.

Because every sample depends on the previous ones the recurrence cannot be vectorised over
time; it runs as a compiled (numba) loop over samples, vectorised nowhere and exact. The
backward pass is the hand-written adjoint of the same loop (reverse time), so gradients reach
the amplitudes, the phases (and so the external modulators) and ``beta`` (the part carried back
through the feedback delay is clipped at :data:`ADJOINT_LIMIT`, see there). Cost, measured in
``benchmarks/bench_synth.py``: a few nanoseconds per sample per chain operator.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from dx7tools.algorithms import ALGORITHMS

FOUR_PI = 4.0 * math.pi
ADJOINT_LIMIT = 1.0e4
"""Bound on the gradient carried back through the feedback path, per sample.

With strong feedback at a high level the loop is chaotic and its exact adjoint grows
exponentially backwards in time (to inf and NaN within a second of audio); clipping what flows
back through the delay keeps training finite. Outside the chaotic regime the carried gradient
stays orders of magnitude below the bound, so gradients there are exact (gradcheck holds)."""


FEEDBACK_SCALE = {4: 0.25, 6: 0.25, 32: 0.25}
"""Algorithms whose feedback Dexed scales down (by 4); all others: 1."""

STABLE_LOOP_GAIN = math.pi
"""Largest feedback loop gain ``beta * amplitude`` (radians) a trained model may use.

That is FEEDBACK 6 at output level 99: Dexed renders it as a clean sawtooth-like tone. FEEDBACK 7
at level 99 (gain 2 pi) is the chaotic regime, whose gradients (clipped, see
:data:`ADJOINT_LIMIT`) carry no direction. Measured (`dx7tools fit`, violin, 200 steps): two
configurations with FEEDBACK 7 stuck at validation loss 31.4 and 31.6 (65.1 with another seed),
10.4 and 11.7 with their feedback operator held below this gain, 9.3 and 10.0 at FEEDBACK 0 and 5;
the paper's violin configuration (also FEEDBACK 7) 8.50 free, 8.68 held."""


def stable_index_limit(feedback: int, algorithm: int) -> float:
    """The modulation index (2 = output level 99) at which the feedback loop of ``algorithm`` at
    FEEDBACK ``feedback`` reaches :data:`STABLE_LOOP_GAIN` (amplitude = index / 2); ``inf`` when
    feedback is off."""
    beta = feedback_beta(feedback, algorithm)
    return 2.0 * STABLE_LOOP_GAIN / beta if beta > 0 else math.inf


def index_ceiling(algorithm: int, feedback: int, feedback_cap: bool, imax: float = 2.0) -> torch.Tensor:
    """(6,) the highest index of each operator OP1..OP6: ``imax``, except, with ``feedback_cap``,
    the feedback operator's :func:`stable_index_limit` (when lower)."""
    ceiling = torch.full((6,), float(imax))
    if feedback_cap:
        source = ALGORITHMS[algorithm - 1].feedback[0] - 1
        ceiling[source] = min(float(imax), stable_index_limit(feedback, algorithm))
    return ceiling


def feedback_beta(feedback, algorithm: int):
    """Feedback phase gain in radians per unit amplitude: ``pi * 2 ** (feedback - 6)`` times the
    algorithm's :data:`FEEDBACK_SCALE`, 0 at feedback 0.

    Args:
        feedback: FEEDBACK 0-7; a float tensor is allowed (learnable feedback), values <= 0
            give 0.
        algorithm: DX7 algorithm 1-32.
    """
    scale = math.pi * FEEDBACK_SCALE.get(int(algorithm), 1.0)
    if isinstance(feedback, torch.Tensor):
        return torch.where(feedback > 0, scale * torch.exp2(feedback - 6.0), torch.zeros_like(feedback))
    return scale * 2.0 ** (feedback - 6) if feedback > 0 else 0.0


@numba.njit(cache=True, nogil=True)
def _forward(theta, amp, beta, memory, out, const):  # pragma: no cover - compiled
    # ``const`` = (4 pi, 1/2) in the arrays' dtype, so that float32 inputs run in float32 (sinf),
    # float64 ones in float64: numba promotes any arithmetic with a Python float to float64.
    four_pi, half_unit = const[0], const[1]
    batch, length, n = theta.shape
    for b in range(batch):
        m1 = memory[b, 0]
        m2 = memory[b, 1]
        half = half_unit * beta[b]
        for i in range(n):
            # Every value is read back from ``out`` so that it carries the array's precision:
            # the next block (memory) and the backward pass see exactly what was used here.
            out[b, 0, i] = amp[b, 0, i] * math.sin(theta[b, 0, i] + half * (m1 + m2))
            for k in range(1, length):
                out[b, k, i] = amp[b, k, i] * math.sin(theta[b, k, i] + four_pi * out[b, k - 1, i])
            m2 = m1
            m1 = out[b, length - 1, i]


@numba.njit(cache=True, nogil=True)
def _backward(theta, amp, beta, memory, out, grad_out, g_theta, g_amp, g_beta, const):  # pragma: no cover
    four_pi, half_unit, limit = const[0], const[1], const[2]
    batch, length, n = theta.shape
    last = length - 1
    for b in range(batch):
        half = half_unit * beta[b]
        pend0 = const[3]  # 0: adjoint waiting for y_src[i] from the feedback inputs of samples i+1, i+2
        pend1 = const[3]  # ... for y_src[i-1] from sample i+1
        acc_beta = 0.0  # float64: a sum over every sample of the block
        for i in range(n - 1, -1, -1):
            g_y = grad_out[b, last, i] + pend0
            for k in range(last, 0, -1):
                arg = theta[b, k, i] + four_pi * out[b, k - 1, i]
                g_amp[b, k, i] = g_y * math.sin(arg)
                g_arg = g_y * amp[b, k, i] * math.cos(arg)
                g_theta[b, k, i] = g_arg
                g_y = grad_out[b, k - 1, i] + four_pi * g_arg
            y1 = out[b, last, i - 1] if i >= 1 else memory[b, 0]
            y2 = out[b, last, i - 2] if i >= 2 else (memory[b, 0] if i == 1 else memory[b, 1])
            arg = theta[b, 0, i] + half * (y1 + y2)
            g_amp[b, 0, i] = g_y * math.sin(arg)
            g_arg = g_y * amp[b, 0, i] * math.cos(arg)
            g_theta[b, 0, i] = g_arg
            acc_beta += g_arg * half_unit * (y1 + y2)
            h = g_arg * half
            pend0 = min(max(pend1 + h, -limit), limit)
            pend1 = min(max(h, -limit), limit)
        g_beta[b] = acc_beta


def _constants(dtype) -> np.ndarray:
    """The kernels' constants in the arrays' dtype: 4 pi, 1/2, :data:`ADJOINT_LIMIT`, 0."""
    return np.array([FOUR_PI, 0.5, ADJOINT_LIMIT, 0.0], dtype=dtype)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()


class FeedbackChain(torch.autograd.Function):
    """Autograd wrapper of the kernel; see :func:`feedback_chain`."""

    @staticmethod
    def forward(ctx, theta, amp, beta, memory):
        th, am, be, me = _numpy(theta), _numpy(amp), _numpy(beta), _numpy(memory)
        out = np.empty_like(th)
        _forward(th, am, be, me, out, _constants(th.dtype))
        ctx.arrays = (th, am, be, me, out)
        return torch.from_numpy(out).to(theta.device)

    @staticmethod
    def backward(ctx, grad_out):
        th, am, be, me, out = ctx.arrays
        g_theta, g_amp, g_beta = np.empty_like(th), np.empty_like(th), np.empty_like(be)
        _backward(th, am, be, me, out, _numpy(grad_out).astype(th.dtype, copy=False), g_theta, g_amp, g_beta,
                  _constants(th.dtype))
        dev = grad_out.device
        return (torch.from_numpy(g_theta).to(dev), torch.from_numpy(g_amp).to(dev),
                torch.from_numpy(g_beta).to(dev), None)


def feedback_chain(theta: torch.Tensor, amp: torch.Tensor, beta: torch.Tensor, memory: torch.Tensor):
    """Run a feedback loop of ``L`` chained operators over a block of samples.

    Args:
        theta: (batch, L, n) phase of each chain operator in radians, everything but the chain's
            own modulation included (2 pi x accumulated phase + external modulators).
        amp: (batch, L, n) amplitude of each chain operator (1.0 = output level 99).
        beta: (batch,) feedback gain in radians per unit amplitude (:func:`feedback_beta`).
        memory: (batch, 2) the loop's last two outputs before this block, ``y[-1], y[-2]``
            (zeros at note-on).

    Returns:
        (batch, L, n) output of each chain operator (the last one is the fed-back one). The
        last two samples of ``[..., -1, :]`` are the memory for the next block.

    Same dtype for all inputs (float32 or float64); runs on the CPU (other devices copy).
    """
    dtype = theta.dtype
    amp, beta, memory = amp.to(dtype), beta.to(dtype), memory.to(dtype)
    return FeedbackChain.apply(theta, amp, beta, memory)
