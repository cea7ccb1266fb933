"""Step 2 of the spine (``dx7tools rank``): which library voice's fixed configuration a run trains with.

* :mod:`ddx7.rank.ranking` — the patch selector: lattice costs (numpy, :mod:`dx7tools.lattice`),
  then level fits of the synth to corpus excerpts for the best candidates.
* :mod:`ddx7.rank.choose` — the configuration a run uses: a named voice, the paper's per
  instrument, or the selector's pick.
* :mod:`ddx7.rank.known_answer` — corpora rendered from one known voice, to test the selector.
"""
