"""The one Pareto front of the project: ``select`` records it in ``selection.json`` and ``figures`` draws it.

A module of its own (no imports) so that the figures the training notebooks draw do not pull the selection
rule into the training stages' cache keys.
"""

from __future__ import annotations

from typing import Iterable


def pareto_front(points: Iterable[tuple[str, float, float]]) -> list[str]:
    """Ids of ``(id, accuracy, cost)`` points no other point beats: higher accuracy, lower cost.

    A point is dominated when another is at least as accurate and at most as costly, and strictly better
    in one of the two; equal points (a tie) are all on the front. Returned in order of increasing cost.
    """
    points = list(points)
    front = []
    for pid, accuracy, cost in points:
        dominated = any(a >= accuracy and c <= cost and (a > accuracy or c < cost) for _, a, c in points)
        if not dominated:
            front.append((cost, -accuracy, pid))
    return [pid for _, _, pid in sorted(front)]
