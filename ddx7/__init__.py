"""The torch side of dx7tools: the differentiable DX7 and what trains it.

* :mod:`ddx7.synth` (with :mod:`ddx7.core`, :mod:`ddx7.feedback`): six-operator FM for any of the
  32 algorithms, feedback included, streaming and differentiable.
* :mod:`ddx7.preview`, :mod:`ddx7.fidelity`: hear a library voice; compare with Dexed.
* :mod:`ddx7.corpus`, :mod:`ddx7.features`: instrument corpora; CREPE f0 and A-weighted loudness.
* :mod:`ddx7.models`, :mod:`ddx7.loss`, :mod:`ddx7.train`, :mod:`ddx7.presets`: DDX7 and the HpN
  baseline, the spectral loss, the trainer and its run folders, default configurations.
* :mod:`ddx7.resynth`: resynthesis of any recording with a trained run.
"""
