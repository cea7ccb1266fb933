"""Several seeds of one configuration: mean, spread and n, and whether two rows really differ.

A row's spread is the sample standard deviation of its values (``ddof=1``; none for one value).
Within a group (a corpus), the row with the best mean is ``best``; another row is
``no difference`` when its mean is within the larger of the two spreads of the best mean,
``worse`` when it is further, and ``spread unknown`` when neither row has a spread (one seed each).

    >>> row = summarize([1.0, 1.2, 1.1])
    >>> row["mean"], row["spread"], row["n"]
    (1.1, 0.1, 3)
    >>> format_value(row)
    '1.100 ± 0.100 (n=3)'
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

BEST, SAME, WORSE, UNKNOWN = "best", "no difference", "worse", "spread unknown"
"""The ``versus_best`` marks (see the module notes)."""


def summarize(values: Sequence[float]) -> dict:
    """``{"n", "mean", "spread", "values"}`` of ``values`` (finite floats); spread None for n < 2."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("no values to summarize")
    n = len(vals)
    mean = math.fsum(vals) / n
    spread = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": round(mean, 6), "spread": None if spread is None else round(spread, 6),
            "values": [round(v, 6) for v in vals]}


def versus(best: dict, row: dict) -> str:
    """How ``row`` stands against the group's ``best`` (both :func:`summarize` dicts), lower is better."""
    if row is best:
        return BEST
    spreads = [s for s in (best["spread"], row["spread"]) if s is not None]
    if not spreads:
        return UNKNOWN
    return SAME if abs(row["mean"] - best["mean"]) <= max(spreads) else WORSE


def mark_against_best(rows: Iterable[dict], group: Callable[[dict], object]) -> None:
    """Set ``row["versus_best"]`` on every row (lower mean is better), best chosen within ``group(row)``."""
    rows = list(rows)
    best: dict = {}
    for row in rows:
        key = group(row)
        if key not in best or row["mean"] < best[key]["mean"]:
            best[key] = row
    for row in rows:
        row["versus_best"] = versus(best[group(row)], row)


def format_value(row: dict, spec: str = ".3f") -> str:
    """``mean ± spread (n=N)``, or ``mean (n=1)``."""
    text = format(row["mean"], spec)
    if row["spread"] is not None:
        text += f" ± {format(row['spread'], spec)}"
    return f"{text} (n={row['n']})"


def rows_csv(rows: Iterable[dict], columns: Sequence[str]) -> str:
    """``rows`` as CSV text with a header of ``columns`` (other keys left out)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
