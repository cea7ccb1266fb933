"""The torch side of dx7tools: the differentiable DX7 and what trains it.

* :mod:`ddx7.synth.fm` (with :mod:`ddx7.synth.core`, :mod:`ddx7.synth.feedback`): six-operator FM for any of the
  32 algorithms, feedback included, streaming and differentiable.
* :mod:`ddx7.synth.preview`, :mod:`ddx7.synth.fidelity`: hear a library voice; compare with Dexed.
* :mod:`ddx7.data.corpus`, :mod:`ddx7.data.features`: instrument corpora; CREPE f0 and A-weighted loudness.
* :mod:`ddx7.fit.models`, :mod:`ddx7.fit.loss`, :mod:`ddx7.fit.train`, :mod:`ddx7.rank.choose`: DDX7 and the HpN
  baseline, the spectral loss, the trainer and its run folders, default configurations.
* :mod:`ddx7.resynth`: resynthesis of any recording with a trained run.
"""
