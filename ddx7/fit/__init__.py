"""Step 3 of the spine (``dx7tools fit``): DDX7 (and the HpN baseline) trained on a corpus.

* :mod:`ddx7.fit.models` — the two decoders of the paper, their synths and the shared reverb.
* :mod:`ddx7.fit.loss` — the multi-resolution spectral loss.
* :mod:`ddx7.fit.train` — the training loop, checkpoints that survive kill -9, the data it reads.
  A run's folder and record belong to :mod:`ddx7.run`.
"""
