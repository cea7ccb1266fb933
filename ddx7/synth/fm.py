"""The differentiable DX7: six FM operators wired by any of the 32 algorithms, with feedback.

Controls in, audio out::

    synth = FMSynth(FixedConfig.from_voice(voice))          # 16 kHz, 64-sample frames
    audio = synth(f0, index)                                  # f0 (B, T) Hz, index (B, T, 6)

``index`` is the per-frame output level of each operator as a modulation index in DDX7's
units: a modulator with index ``I`` shifts its targets' phase by ``2 pi I sin(...)`` and a
carrier with index ``I`` contributes ``I / 2 * sin(...)``. ``I = 2`` is a DX7 operator at
output level 99 with its EG at 99 (Dexed shifts the phase by 4 pi at full scale), so DDX7's
Imax = 2 spans the DX7's whole range and ``I / 2`` is the amplitude that
:func:`dx7tools.levels.amplitude_to_output_level` turns back into an output level.

Documented behaviour:

* Frames -> samples: causal linear interpolation (:func:`ddx7.synth.core.upsample_causal`), so a
  frame's value is reached on its last sample (half a frame of latency, 2 ms by default).
  Operator frequencies (detune included) are computed per frame and interpolated the same way.
* Unvoiced frames (``f0 == 0``): ratio-mode operators get index 0 there (as carriers and as
  modulators), so they fade out over the frame into it and back in over the frame after it;
  fixed-frequency operators keep sounding at their index.
* Anti-aliasing: per frame, an operator's index is scaled down to zero as its frequency goes
  from 0.45 fs to the Nyquist frequency (:func:`ddx7.synth.core.antialias_gain`); ``antialias=False``
  renders like the DX7/Dexed, folding included. Sidebands of an FM pair below Nyquist that fold
  are not treated.
* Phase: exact 40-bit fixed-point frame accumulators (:func:`ddx7.synth.core.accumulate_phase`); f0 is
  therefore not differentiable (it is an input feature, never learned).
* Streaming: :meth:`FMSynth.render` takes and returns an :class:`FMState`; rendering a file
  block by block gives the same samples as rendering it at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dx7tools.audio import FRAME_RATE, SAMPLE_RATE
from dx7tools.errors import DX7Error
from dx7tools.fixed_config import FixedConfig

from ddx7.synth import core
from ddx7.synth.feedback import feedback_beta


@dataclass
class FMState:
    """What a block hands to the next one (per batch item).

    Attributes:
        phase: (B, 6) int64 phase at the block end (2^40 = one cycle).
        f0: (B,) the previous frame's f0 (Hz), start of the next interpolation.
        index: (B, 6) the previous frame's indexes.
        memory: (B, 2) the feedback loop's last two outputs.
    """

    phase: torch.Tensor
    f0: torch.Tensor
    index: torch.Tensor
    memory: torch.Tensor

    def detach(self) -> "FMState":
        return FMState(self.phase, self.f0.detach(), self.index.detach(), self.memory.detach())


class FMSynth(nn.Module):
    """Six-operator FM synth for one fixed configuration.

    Args:
        config: the :class:`dx7tools.fixed_config.FixedConfig` (algorithm, frequencies, feedback).
        sample_rate: output rate in Hz (> 0), 16000 by default.
        hop_length: samples per control frame; default ``sample_rate / 250`` (64 at 16 kHz),
            which must then be a whole number.
        antialias: fade out operators approaching Nyquist (see the module notes).
        learn_feedback: make the feedback level (0-7, continuous) a trainable parameter.
    """

    def __init__(self, config: FixedConfig, sample_rate: float = SAMPLE_RATE,
                 hop_length: int | None = None, *, antialias: bool = True, learn_feedback: bool = False):
        super().__init__()
        if not isinstance(config, FixedConfig):
            raise DX7Error(f"config must be a FixedConfig, got {type(config).__name__}")
        if not np.isfinite(sample_rate) or sample_rate <= 0:
            raise DX7Error(f"sample rate must be > 0 Hz, got {sample_rate!r}")
        if hop_length is None:
            hop = sample_rate / FRAME_RATE
            if hop != int(hop):
                raise DX7Error(f"sample rate {sample_rate} Hz is not a multiple of {FRAME_RATE:g} frames/s; "
                               "pass hop_length")
            hop_length = int(hop)
        if int(hop_length) != hop_length or hop_length < 1:
            raise DX7Error(f"hop_length must be a whole number >= 1, got {hop_length!r}")
        self.config = config
        self.algorithm = config.algorithm_spec
        core.feedback_loop(self.algorithm)  # the table is checked once, here
        self.sample_rate = float(sample_rate)
        self.hop_length = int(hop_length)
        self.antialias = antialias
        self.register_buffer("ratio", torch.tensor(config.ratios, dtype=torch.float64), persistent=False)
        self.register_buffer("fixed_hz", torch.tensor(config.fixed_hz, dtype=torch.float64), persistent=False)
        self.register_buffer("is_fixed", torch.tensor(config.is_fixed), persistent=False)
        self.register_buffer("detune_steps", torch.tensor(config.detune, dtype=torch.float64) - 7.0,
                             persistent=False)
        self.register_buffer("carrier_mask", torch.tensor(self.algorithm.carrier_mask, dtype=torch.float32),
                             persistent=False)
        if learn_feedback:
            self.feedback = nn.Parameter(torch.tensor(float(config.feedback)))
        else:
            self.register_buffer("feedback", torch.tensor(float(config.feedback)), persistent=False)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    # -- controls ----------------------------------------------------------------------------
    def _check(self, f0: torch.Tensor, index: torch.Tensor):
        f0 = torch.as_tensor(f0)
        index = torch.as_tensor(index)
        if f0.dim() == 1:
            f0 = f0[None]
        if index.dim() == 2:
            index = index[None]
        if f0.dim() != 2 or index.dim() != 3 or index.shape[-1] != 6 or index.shape[:2] != f0.shape:
            raise DX7Error(f"controls must be f0 (batch, frames) and index (batch, frames, 6); "
                           f"got f0 {tuple(f0.shape)} and index {tuple(index.shape)}")
        if f0.shape[1] == 0:
            raise DX7Error("controls have no frames")
        if not bool(torch.isfinite(f0).all()) or bool((f0 < 0).any()):
            raise DX7Error("f0 must be finite and >= 0 Hz (0 = unvoiced)")
        if not bool(torch.isfinite(index).all()):
            raise DX7Error("index (output levels) must be finite")
        return f0, index

    def initial_state(self, f0: torch.Tensor, index: torch.Tensor) -> FMState:
        """Note-on state for controls ``f0`` (B, T), ``index`` (B, T, 6): zero phases and memory,
        interpolation starting from the first frame."""
        f0, index = self._check(f0, index)
        b = f0.shape[0]
        return FMState(torch.zeros(b, 6, dtype=torch.int64, device=f0.device), f0[:, 0].detach(),
                       index[:, 0], torch.zeros(b, 2, dtype=torch.float64, device=f0.device))

    def get_controls(self, f0: torch.Tensor, index: torch.Tensor, state: FMState | None = None) -> dict:
        """Validate and scale frame controls into per-sample ones.

        Args:
            f0: (B, T) or (T,) fundamental per frame in Hz, >= 0.
            index: (B, T, 6) or (T, 6) modulation index per frame and operator (OP1 first).
            state: carried state of a stream, ``None`` at note-on.

        Returns:
            dict with ``freq`` (B, 6, T) float64 operator frequencies per frame (Hz) and
            ``previous_freq`` (B, 6) those of the frame before, ``amp`` (B, 6, N) amplitudes per
            sample (index / 2, with the voicing and anti-aliasing gains applied per frame before
            the interpolation), ``state`` (the state the block starts from).
        """
        f0, index = self._check(f0, index)
        if state is None:
            state = self.initial_state(f0, index)
        elif state.phase.shape[0] != f0.shape[0]:
            raise DX7Error(f"state is for batch {state.phase.shape[0]}, controls for {f0.shape[0]}")
        # Everything per frame, then one interpolation: (B, 6, T) channels first.
        f0_all = torch.cat([state.f0[:, None].to(f0.dtype), f0], dim=1).double()
        index_all = torch.cat([state.index[:, None].to(index.dtype), index], dim=1).transpose(1, 2)
        freq = core.operator_frequencies(f0_all, self.ratio, self.fixed_hz, self.is_fixed,
                                         self.detune_steps).transpose(1, 2)
        gate = (self.is_fixed[:, None] | (f0_all > 0)[:, None, :]).double()
        if self.antialias:
            gate = gate * core.antialias_gain(freq, self.sample_rate)
        gated = index_all * gate.to(index_all.dtype)
        amp = 0.5 * core.upsample_causal(gated[..., 1:], gated[..., 0], self.hop_length)
        return {"freq": freq[..., 1:], "previous_freq": freq[..., 0], "amp": amp, "state": state,
                "f0": f0[:, -1], "index": index[:, -1]}

    # -- signal ------------------------------------------------------------------------------
    def get_signal(self, controls: dict):
        """Per-sample controls -> audio through :func:`ddx7.synth.core.fm_operators`.

        Returns:
            ``(audio, state)``: audio (B, N) (1.0 = one carrier at output level 99) and the
            state after the block.
        """
        state: FMState = controls["state"]
        amp = controls["amp"]
        phase, end = core.accumulate_phase(controls["freq"], controls["previous_freq"], self.sample_rate,
                                           self.hop_length, state.phase, amp.dtype)
        beta = feedback_beta(self.feedback.to(amp.dtype), self.config.algorithm).expand(amp.shape[0])
        outs, memory = core.fm_operators(phase, amp, self.algorithm, beta, state.memory)
        audio = (outs * self.carrier_mask.to(amp.dtype)[None, :, None]).sum(1)
        return audio, FMState(end, controls["f0"].detach(), controls["index"].detach(), memory)

    def render(self, f0: torch.Tensor, index: torch.Tensor, state: FMState | None = None):
        """Render one block; ``(audio (B, T * hop), state)``. Pass the state back for the next block."""
        return self.get_signal(self.get_controls(f0, index, state))

    def forward(self, f0: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Render a whole input from note-on: f0 (B, T) Hz, index (B, T, 6) -> audio (B, T * hop)."""
        return self.render(f0, index)[0]

    def extra_repr(self) -> str:
        return f"{self.config.describe()}, sample_rate={self.sample_rate:g}, hop_length={self.hop_length}"
