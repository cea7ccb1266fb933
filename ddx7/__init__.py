"""The torch side of dx7tools: the differentiable DX7 and what trains, picks, exports and scores it.

Laid out by the steps of the spine (``dx7tools import`` is the numpy side, :mod:`dx7tools`):

* :mod:`ddx7.synth` — the differentiable DX7 every step uses: six FM operators, any of the 32
  algorithms, feedback, streaming (``from ddx7.synth import FMSynth``); hearing a library voice
  (``preview``) and how close it comes to Dexed (``fidelity``).
* :mod:`ddx7.data` — what the model learns from: corpora (``corpus``) and their CREPE f0 and
  A-weighted loudness (``features``).
* :mod:`ddx7.rank` — step 2, ``dx7tools rank``: the patch selector (``ranking``) and the choice of
  a run's fixed configuration (``choose``).
* :mod:`ddx7.fit` — step 3, ``dx7tools fit``: the models, the loss and the training loop.
* :mod:`ddx7.run` — a run's home: its folder, ``run.json``, its model, the resume rules.
* :mod:`ddx7.export` — step 4, ``dx7tools export`` / ``render``: a run back to a DX7 voice and a
  performance.
* :mod:`ddx7.evaluate` — FAD, the paper's table, the HTML report.
* :mod:`ddx7.resynth` — any recording resynthesised with a trained run.
"""
