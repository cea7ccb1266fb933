"""What rank and fit learn from: instrument corpora and their per-frame features.

* :mod:`ddx7.data.corpus` — the rendered default corpora, your recordings, URMP stems; splits.
* :mod:`ddx7.data.features` — CREPE f0 and A-weighted loudness, cached per corpus.
"""
