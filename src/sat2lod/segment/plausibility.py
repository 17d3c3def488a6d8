"""Geometric plausibility of building-mask components: walls all round and a smooth roof.

A building stands on its surroundings: along most of its outline the surface drops by about its height within a
few metres (walls). Natural relief the segmenter takes for a roof does not: a crag, a terrace or a scrub-covered
bench on a slope drops on its downhill side only, and on the uphill side the hillside outside is as high as the
component or higher. A tree crown drops all round too, but its surface is rough where a roof is planar.

For each 4-connected component of the mask (:func:`plausibility_filter`), from the component and a ring around
it only (so the result of a component does not depend on anything farther than ``ring_m[1] + roof_radius_m``
from it: tiles with a halo that wide give the same answer):

- height ``h``: median nDSM of the component's cells (m);
- wall share: over the ring cells at a distance in ``(ring_m[0], ring_m[1]]`` from the component (outside the
  stereo fattening of the outline, inside the nearest street), the share whose surface lies at least
  ``min(step_fraction * h, step_max_m)`` below the highest surface of the component within ``roof_radius_m``.
  The surface is the DSM when given (a hillside above the component counts against it), else the nDSM;
  ring cells without height are not counted;
- roughness: median over the component's interior (cells two or more cells from its edge) of |Laplacian| of the
  3 x 3 median-filtered nDSM (m, per cell; ``ndsm_threshold``'s roughness): roof planes are smooth, canopies not.

A component is rejected (set to 0) when its wall share is below ``min_wall_share`` or its roughness above
``max_roughness_m``. A component without evidence is kept: no finite nDSM on it, or fewer than
:data:`MIN_RING_CELLS` ring cells with a height (nodata around it, the grid's edge).

Measured on the shipped U-Net's masks (bench/segment_plausibility.py, bench/results/segment_plausibility.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sat2lod.schema import defaults

log = logging.getLogger(__name__)
_PL = defaults("segmentation", "plausibility")

#: fewest ring cells with a height for the wall share to count as evidence (fewer: the component is kept)
MIN_RING_CELLS = 8


@dataclass(frozen=True)
class PlausibilityParams:
    """Config section ``segmentation.plausibility`` (see config/schema.yaml for each key).

    Attributes:
        enabled: apply the filter (False: the mask is left as it is).
        ring_m: inner and outer distance (m) of the ring around a component where walls are looked for.
        roof_radius_m: the roof height a ring cell is compared with is the highest component cell within this (m).
        step_fraction, step_max_m: a ring cell shows a wall when it lies at least
            ``min(step_fraction * h, step_max_m)`` below that roof height (``h`` = the component's median nDSM).
        min_wall_share: smallest share of the ring cells showing a wall for a component to be kept.
        max_roughness_m: largest median |Laplacian| (m) of the component's nDSM for it to be kept; null = no limit.
    """

    enabled: bool = _PL["enabled"]
    ring_m: tuple[float, float] | list[float] = tuple(_PL["ring_m"])
    roof_radius_m: float = _PL["roof_radius_m"]
    step_fraction: float = _PL["step_fraction"]
    step_max_m: float = _PL["step_max_m"]
    min_wall_share: float = _PL["min_wall_share"]
    max_roughness_m: float | None = _PL["max_roughness_m"]

    def __post_init__(self) -> None:
        a, b = (float(v) for v in self.ring_m)
        if not 0 <= a < b:
            raise ValueError(
                f"segmentation.plausibility.ring_m must be [inner, outer] with 0 <= inner < outer, got {self.ring_m}"
            )


def component_evidence(
    component: np.ndarray,
    ndsm: np.ndarray,
    dsm: np.ndarray | None,
    resolution_m: float,
    prm: PlausibilityParams,
) -> dict:
    """Height, wall share and roughness of one component (the features of :func:`plausibility_filter`).

    Args:
        component: (h, w) bool, the component, on a crop that reaches at least ``ring_m[1] + roof_radius_m`` beyond
            it wherever the grid does (cells beyond the grid are simply absent).
        ndsm: (h, w) height above terrain (m), NaN = nodata; dsm: (h, w) surface height (m) or None.
        resolution_m: cell size (m).
    Returns:
        dict: ``height_m`` (NaN: no nDSM on the component), ``wall_share`` and ``roughness_m`` (NaN: no evidence),
        ``ring_cells`` (ring cells with a height).
    """
    surf = ndsm if dsm is None else dsm
    c_fin = component & np.isfinite(ndsm)
    out = {"height_m": np.nan, "wall_share": np.nan, "roughness_m": np.nan, "ring_cells": 0}
    if not c_fin.any():
        return out
    h = float(np.median(ndsm[c_fin]))
    out["height_m"] = h
    dist = ndimage.distance_transform_edt(~component) * resolution_m
    r_in = max(1, round(prm.roof_radius_m / resolution_m))
    roof = ndimage.maximum_filter(
        np.where(component & np.isfinite(surf), surf, -np.inf),
        size=2 * r_in + 1,
        mode="constant",
        cval=-np.inf,
    )
    a, b = (float(v) for v in prm.ring_m)
    ring = (dist > a) & (dist <= b) & np.isfinite(surf) & np.isfinite(roof)
    out["ring_cells"] = int(ring.sum())
    if out["ring_cells"] >= MIN_RING_CELLS:
        step = min(prm.step_fraction * h, prm.step_max_m)
        out["wall_share"] = float(np.mean(roof[ring] - surf[ring] >= step))
    inner = ndimage.binary_erosion(component, iterations=2) & np.isfinite(ndsm)
    if inner.sum() >= 4:
        filled = np.where(np.isfinite(ndsm), ndsm, h)
        lap = np.abs(ndimage.laplace(ndimage.median_filter(filled, size=3, mode="nearest")))
        out["roughness_m"] = float(np.median(lap[inner]))
    return out


def verdict(evidence: dict, prm: PlausibilityParams) -> str:
    """``kept``, ``walls`` (rejected: wall share under ``min_wall_share``) or ``roughness`` (rejected: rough top)
    for the :func:`component_evidence` of a component; missing evidence (NaN) keeps it."""
    if evidence["wall_share"] < prm.min_wall_share:  # NaN compares False
        return "walls"
    if prm.max_roughness_m is not None and evidence["roughness_m"] > prm.max_roughness_m:
        return "roughness"
    return "kept"


def mask_components_evidence(
    mask: np.ndarray,
    ndsm: np.ndarray,
    resolution_m: float,
    dsm: np.ndarray | None = None,
    params: dict | PlausibilityParams | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Evidence and verdict of every component of a mask, each from its own crop (component + ring + roof radius).

    Args:
        mask: (H, W) uint8 building mask (1 building); ndsm, dsm: (H, W) m, NaN = nodata (dsm may be None).
        resolution_m: cell size (m); params: section ``segmentation.plausibility`` (None = defaults).
    Returns:
        The (H, W) int32 label image of the components (4-connected, 1..n) and, per label in order, the
        :func:`component_evidence` dict with ``label``, ``cells`` and ``verdict`` (:func:`verdict`).
    """
    prm = params if isinstance(params, PlausibilityParams) else PlausibilityParams(**(params or {}))
    for name, a in (("nDSM", ndsm), ("DSM", dsm)):
        if a is not None and a.shape != mask.shape:
            raise ValueError(
                f"plausibility filter: the {name} {a.shape} and the mask {mask.shape} differ in shape"
            )
    lab, _ = ndimage.label(mask == 1)
    pad = round((float(prm.ring_m[1]) + prm.roof_radius_m) / resolution_m) + 2
    H, W = mask.shape
    table = []
    for i, sl in enumerate(ndimage.find_objects(lab), 1):
        r0, r1 = max(0, sl[0].start - pad), min(H, sl[0].stop + pad)
        c0, c1 = max(0, sl[1].start - pad), min(W, sl[1].stop + pad)
        comp = lab[r0:r1, c0:c1] == i
        ev = component_evidence(
            comp,
            ndsm[r0:r1, c0:c1].astype(np.float64),
            None if dsm is None else dsm[r0:r1, c0:c1].astype(np.float64),
            resolution_m,
            prm,
        )
        table.append({"label": i, "cells": int(comp.sum()), **ev, "verdict": verdict(ev, prm)})
    return lab, table


def plausibility_filter(
    mask: np.ndarray,
    ndsm: np.ndarray | None,
    resolution_m: float,
    dsm: np.ndarray | None = None,
    params: dict | PlausibilityParams | None = None,
) -> tuple[np.ndarray, dict]:
    """Remove the mask components that show no walls or a rough top (see the module's docstring).

    Args:
        mask: (H, W) uint8 building mask (1 building, 0 not, 255 nodata), e.g. of
            :func:`sat2lod.segment.infer.probability_to_mask`.
        ndsm: (H, W) height above terrain (m) on the same grid, NaN = nodata; None = no evidence (mask unchanged).
        resolution_m: cell size (m).
        dsm: (H, W) surface height (m) on the same grid, NaN = nodata, or None (the nDSM is used for the walls).
        params: config section ``segmentation.plausibility`` (dict or :class:`PlausibilityParams`); None = defaults.
    Returns:
        The filtered mask (a new array; rejected components set to 0) and a summary: components seen, rejected
        (for walls, for roughness), building cells before and after.
    """
    prm = params if isinstance(params, PlausibilityParams) else PlausibilityParams(**(params or {}))
    out = mask.copy()
    cells = int((mask == 1).sum())
    summary = {"components": 0, "rejected_walls": 0, "rejected_roughness": 0, "cells_before": cells}
    summary["cells_after"] = cells
    if not prm.enabled or ndsm is None or cells == 0:
        summary["components"] = int(ndimage.label(mask == 1)[1]) if cells else 0
        return out, summary
    lab, table = mask_components_evidence(mask, ndsm, resolution_m, dsm, prm)
    summary["components"] = len(table)
    reject = np.zeros(len(table) + 1, bool)
    for row in table:
        if row["verdict"] != "kept":
            summary[f"rejected_{row['verdict']}"] += 1
            reject[row["label"]] = True
    out[reject[lab]] = 0
    summary["cells_after"] = int((out == 1).sum())
    log.info("plausibility filter: %s", summary)
    return out, summary
