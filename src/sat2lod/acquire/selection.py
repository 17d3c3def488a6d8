"""Choice of the stereo pair / triplet among search results.

Views of one stereo acquisition come from one satellite pass: same platform (and orbit when the catalog gives
it) within a few minutes. Among such groups, keep the largest set of views (up to ``max_views``) that all cover
the AOI and whose pairs have a base-to-height ratio inside [bh_min, bh_max]; ties are broken by a B/H closest
to ``bh_target``, then by the lowest mean incidence.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shapely.geometry.base import BaseGeometry

from sat2lod.acquire.geometry import base_to_height

log = logging.getLogger(__name__)


class SelectionError(RuntimeError):
    """No acceptable stereo set; the message lists the candidates and the constraint that failed."""


@dataclass
class ViewInfo:
    """What selection knows about one candidate view.

    Attributes:
        key: index or id of the candidate; datetime: acquisition time (UTC).
        incidence_deg, azimuth_deg: viewing angles (azimuth of the satellite from the ground, clockwise from north).
        footprint: lon/lat polygon; platform, orbit: pass identifiers (None when unknown).
    """

    key: str
    datetime: datetime
    incidence_deg: float
    azimuth_deg: float
    footprint: BaseGeometry
    platform: str | None = None
    orbit: int | str | None = None


@dataclass
class Selection:
    """Chosen views (indices into the candidate list, in time order) and the stereo pairs among them."""

    views: list[int]
    pairs: list[tuple[int, int]]
    base_to_height: dict[tuple[int, int], float]


def group_passes(views: Sequence[ViewInfo], max_gap_s: float) -> list[list[int]]:
    """Indices of ``views`` grouped by pass: same platform and orbit, consecutive times <= ``max_gap_s`` apart."""
    order = sorted(
        range(len(views)), key=lambda i: (str(views[i].platform), str(views[i].orbit), views[i].datetime)
    )
    groups: list[list[int]] = []
    for i in order:
        g = groups[-1] if groups else None
        if g is not None:
            last = views[g[-1]]
            same = (last.platform, last.orbit) == (views[i].platform, views[i].orbit)
            if same and (views[i].datetime - last.datetime).total_seconds() <= max_gap_s:
                g.append(i)
                continue
        groups.append([i])
    return groups


def select_stereo(
    views: Sequence[ViewInfo],
    aoi_lonlat: BaseGeometry,
    max_views: int = 3,
    bh_min: float = 0.05,
    bh_max: float = 1.0,
    bh_target: float = 0.3,
    max_gap_s: float = 600.0,
    min_aoi_coverage: float = 0.8,
) -> Selection:
    """Pick the stereo views for the AOI.

    Args:
        views: candidates.
        aoi_lonlat: AOI polygon (lon/lat).
        max_views: 2 (pair) or 3 (triplet).
        bh_min, bh_max: accepted base-to-height range of a pair.
        bh_target: preferred B/H (tie-break).
        max_gap_s: longest time between two views of one pass (s).
        min_aoi_coverage: fraction of the AOI area each view must cover.
    Returns:
        The selection; pairs (in selected-view numbering 0..n-1) are the pairs with B/H in range.
    Raises:
        SelectionError: no pass gives two views covering the AOI with a B/H in range.
    """
    if max_views < 2:
        raise ValueError("max_views must be >= 2 for stereo")
    area = aoi_lonlat.area
    covering = [
        i
        for i, v in enumerate(views)
        if area == 0 or v.footprint.intersection(aoi_lonlat).area >= min_aoi_coverage * area
    ]
    best: tuple[tuple[float, ...], Selection] | None = None
    for group in group_passes(views, max_gap_s):
        members = [i for i in group if i in covering]
        for n in range(min(max_views, len(members)), 1, -1):
            for combo in itertools.combinations(members, n):
                combo = tuple(sorted(combo, key=lambda i: views[i].datetime))
                bh = {
                    (a, b): base_to_height(
                        views[combo[a]].incidence_deg,
                        views[combo[a]].azimuth_deg,
                        views[combo[b]].incidence_deg,
                        views[combo[b]].azimuth_deg,
                    )
                    for a, b in itertools.combinations(range(n), 2)
                }
                pairs = [p for p, r in bh.items() if bh_min <= r <= bh_max]
                if not pairs or {k for p in pairs for k in p} != set(range(n)):
                    continue
                ratios = sorted(bh[p] for p in pairs)
                score = (
                    n,
                    -abs(ratios[len(ratios) // 2] - bh_target),
                    -sum(views[i].incidence_deg for i in combo) / n,
                )
                if best is None or score > best[0]:
                    best = (score, Selection(list(combo), pairs, bh))
    if best is None:
        lines = [
            f"  {v.key}: {v.datetime.isoformat()} platform={v.platform} orbit={v.orbit} "
            f"incidence={v.incidence_deg:.1f} azimuth={v.azimuth_deg:.1f} covers AOI={i in covering}"
            for i, v in enumerate(views)
        ]
        raise SelectionError(
            f"no stereo pair among {len(views)} candidate(s): need two views of one pass (<= {max_gap_s} s apart) "
            f"covering >= {min_aoi_coverage:.0%} of the AOI with B/H in [{bh_min}, {bh_max}]. Candidates:\n"
            + "\n".join(lines)
            + "\nAdjust source.selection or the search dates/area."
        )
    sel = best[1]
    log.info(
        "selected views %s, pairs %s, B/H %s",
        [views[i].key for i in sel.views],
        sel.pairs,
        {f"{a}-{b}": round(r, 3) for (a, b), r in sel.base_to_height.items()},
    )
    return sel
