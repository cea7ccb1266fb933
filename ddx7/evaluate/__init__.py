"""Evaluation: FAD as the paper measures it, the paper's table, and an HTML report of a run.

* :mod:`ddx7.evaluate.fad` — the Fréchet distance between Gaussians of embeddings.
* :mod:`ddx7.evaluate.embeddings` — the embedders FAD can use (CREPE, VGGish), as plug-ins.
* :mod:`ddx7.evaluate.score` — a trained run's FAD: its resynthesised test split against the corpus.
* :mod:`ddx7.evaluate.paper_table` — the DDX7 paper's FAD table on our corpora.
* :mod:`ddx7.evaluate.report` — one self-contained HTML page about a run.
"""

from ddx7.evaluate.score import evaluate_run, resynthesize_test

__all__ = ["evaluate_run", "resynthesize_test"]
