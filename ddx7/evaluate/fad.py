"""Fréchet Audio Distance (Kilgour et al. 2019): the Fréchet distance between two Gaussians
fitted to the embeddings of two sets of audio.

For embeddings ``A`` (n, d) and ``B`` (m, d) with means ``mu_a, mu_b`` and covariances
``S_a, S_b``::

    FAD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))

The matrix square root is ``scipy.linalg.sqrtm`` (as the reference FID/FAD code). ``S_a S_b``
is similar to the symmetric PSD ``S_a^(1/2) S_b S_a^(1/2)``, so its square root has real,
non-negative eigenvalues; rounding can still leave tiny imaginary parts (dropped when below
:data:`IMAG_TOL` relative to the trace) or, for near-singular covariances, a non-finite result
(then ``EPS`` is added to both diagonals and the root retried, as the reference code does).

Small sets: a full covariance estimated from fewer frames than dimensions is singular and the
distance is mostly estimator noise, so :func:`gaussian_stats` refuses sets with fewer than
:func:`min_frames` frames (twice the dimension) unless ``diagonal=True``, which keeps only the
per-dimension variances (then 2 frames suffice). Diagonal and full distances are different
quantities: never compare one with the other.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from dx7tools.errors import DX7Error

FRAMES_PER_DIM = 2
"""A full covariance needs at least this many frames per embedding dimension."""
EPS = 1e-6
IMAG_TOL = 1e-3


def min_frames(dim: int, diagonal: bool = False) -> int:
    """Fewest frames :func:`gaussian_stats` accepts for ``dim``-dimensional embeddings."""
    return 2 if diagonal else FRAMES_PER_DIM * int(dim)


@dataclass
class GaussianStats:
    """Mean and covariance of a set of embeddings.

    Attributes:
        mean: (d,) float64.
        cov: (d, d) float64 (diagonal matrix when ``diagonal``).
        n_frames: how many embedding frames they were estimated from.
        diagonal: only the variances were estimated.
    """

    mean: np.ndarray
    cov: np.ndarray
    n_frames: int
    diagonal: bool = False


def gaussian_stats(embeddings, *, diagonal: bool = False, what: str = "set") -> GaussianStats:
    """Fit a Gaussian to embedding frames.

    Args:
        embeddings: (n, d) array, one row per frame.
        diagonal: estimate only the variances (for sets too small for a full covariance).
        what: how to name the set in errors (e.g. ``"test split of violin"``).

    Raises:
        DX7Error: not 2-D, non-finite values, or fewer than :func:`min_frames` frames (the
            message says how many are needed and that ``--diagonal`` is the fallback).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 1:
        raise DX7Error(f"{what}: embeddings must be (frames, dims), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DX7Error(f"{what}: embeddings contain NaN or infinite values")
    n, d = x.shape
    need = min_frames(d, diagonal)
    if n < need:
        if diagonal:
            raise DX7Error(f"{what}: {n} embedding frame(s); even a diagonal estimate needs {need}")
        raise DX7Error(f"{what}: {n} embedding frames are too few for a stable {d}x{d} covariance "
                       f"(need at least {need}); use more audio, or --diagonal for a diagonal estimate")
    mean = x.mean(axis=0)
    if diagonal:
        cov = np.diag(x.var(axis=0, ddof=1))
    else:
        cov = np.cov(x, rowvar=False, ddof=1).reshape(d, d)
    return GaussianStats(mean, cov, n, diagonal)


def frechet_distance(mean_a, cov_a, mean_b, cov_b) -> float:
    """Fréchet distance between N(mean_a, cov_a) and N(mean_b, cov_b).

    Args:
        mean_a, mean_b: (d,) means.
        cov_a, cov_b: (d, d) symmetric positive semi-definite covariances.

    Returns:
        The distance (squared-embedding units), >= 0.
    """
    mu_a, mu_b = np.atleast_1d(np.asarray(mean_a, np.float64)), np.atleast_1d(np.asarray(mean_b, np.float64))
    s_a, s_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    d = mu_a.shape[0]
    if mu_b.shape != (d,) or s_a.shape != (d, d) or s_b.shape != (d, d):
        raise DX7Error(f"Fréchet distance: shapes disagree: means {mu_a.shape} {mu_b.shape}, "
                       f"covariances {s_a.shape} {s_b.shape}")
    diff = mu_a - mu_b
    trace_root = _trace_sqrt_product(s_a, s_b)
    value = float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * trace_root)
    return max(value, 0.0)  # rounding can leave -1e-12 for identical sets


def _trace_sqrt_product(s_a: np.ndarray, s_b: np.ndarray) -> float:
    """tr((s_a s_b)^(1/2)) by scipy's sqrtm, robust to rounding (see the module notes)."""
    if _is_diagonal(s_a) and _is_diagonal(s_b):  # exact and O(d): the --diagonal path
        return float(np.sqrt(np.clip(np.diag(s_a) * np.diag(s_b), 0.0, None)).sum())
    with warnings.catch_warnings():  # singular products are expected (small sets); handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(s_a @ s_b)
        if not np.isfinite(root).all():
            offset = EPS * np.eye(s_a.shape[0])
            root = scipy.linalg.sqrtm((s_a + offset) @ (s_b + offset))
    if np.iscomplexobj(root):
        scale = max(abs(np.trace(root)), 1e-12)
        if np.abs(np.diagonal(root).imag).max() / scale > IMAG_TOL:
            raise DX7Error("Fréchet distance: the covariance product has a complex square root "
                           "(covariances not positive semi-definite?)")
        root = root.real
    return float(np.trace(root))


def _is_diagonal(m: np.ndarray) -> bool:
    return not np.any(m - np.diag(np.diagonal(m)))


def stats_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance between two fitted sets (both full or both diagonal)."""
    if a.diagonal != b.diagonal:
        raise DX7Error("cannot compare a diagonal estimate with a full one")
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def fad(embeddings_a, embeddings_b, *, diagonal: bool = False) -> float:
    """Fréchet Audio Distance between two sets of embedding frames, each (n, d).

    Raises:
        DX7Error: too few frames for the covariance (see :func:`gaussian_stats`), bad shapes.
    """
    return stats_distance(gaussian_stats(embeddings_a, diagonal=diagonal, what="first set"),
                          gaussian_stats(embeddings_b, diagonal=diagonal, what="second set"))
