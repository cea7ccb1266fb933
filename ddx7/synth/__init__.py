"""The differentiable DX7, used by every stage: six FM operators, any of the 32 algorithms, feedback.

* :mod:`ddx7.synth.core` — small pure functions the operators are made of (phase, FM, upsampling).
* :mod:`ddx7.synth.feedback` — operator feedback sample by sample, with an exact gradient.
* :mod:`ddx7.synth.fm` — :class:`FMSynth`: per-frame controls in, audio out, streaming.
* :mod:`ddx7.synth.preview` — hear a library voice (a held note through FMSynth or Dexed).
* :mod:`ddx7.synth.fidelity` — how close FMSynth comes to Dexed on probe voices.
"""

from ddx7.synth.fm import FMSynth

__all__ = ["FMSynth"]
