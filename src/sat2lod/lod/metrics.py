"""Footprint metrics against reference polygons: IoU, C-IoU, PoLiS, N-ratio, Hausdorff, CE90.

Definitions (all distances in metres of the projected CRS):

- matching: one-to-one, greedy by decreasing IoU, a pair counts when IoU >= ``min_iou`` (0.5);
- IoU: area IoU of a matched pair; ``iou_global`` = IoU of the union of all predicted footprints with the
  union of all reference footprints (a mask-level score);
- C-IoU (complexity-aware IoU, Zorzi et al., PolyWorld 2022): IoU * (1 - |N_p - N_r| / (N_p + N_r)) with N the
  vertex counts (exterior + holes, closing vertex not counted);
- PoLiS (Avbelj et al. 2015): mean over the vertices of A of their distance to the boundary of B, halved,
  plus the same from B to A;
- N-ratio: sum of predicted vertex counts / sum of reference vertex counts over matched pairs;
- Hausdorff: symmetric Hausdorff distance between the two boundaries;
- CE90: 90th percentile of the centroid offsets of matched pairs (horizontal accuracy proxy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon


def n_vertices(p: Polygon) -> int:
    """Vertex count of a polygon (exterior and holes, without closing vertices)."""
    return sum(len(r.coords) - 1 for r in [p.exterior, *p.interiors])


def iou(a: Polygon, b: Polygon) -> float:
    u = a.union(b).area
    return float(a.intersection(b).area / u) if u > 0 else 0.0


def ciou(a: Polygon, b: Polygon) -> float:
    na, nb = n_vertices(a), n_vertices(b)
    return iou(a, b) * (1.0 - abs(na - nb) / (na + nb))


def polis(a: Polygon, b: Polygon) -> float:
    def one_way(p: Polygon, q: Polygon) -> float:
        verts = np.vstack([np.asarray(r.coords)[:-1] for r in [p.exterior, *p.interiors]])
        d = shapely.distance(shapely.points(verts), q.boundary)
        return float(np.mean(d))

    return 0.5 * one_way(a, b) + 0.5 * one_way(b, a)


def hausdorff(a: Polygon, b: Polygon) -> float:
    return float(shapely.hausdorff_distance(a.boundary, b.boundary, densify=0.1))


def match(pred: list[Polygon], ref: list[Polygon], min_iou: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one matches (i_pred, i_ref, IoU), greedy by decreasing IoU, IoU >= ``min_iou``."""
    if not pred or not ref:
        return []
    tree = shapely.STRtree(ref)
    pi, ri = tree.query(pred, predicate="intersects")
    cand = sorted(((iou(pred[i], ref[j]), int(i), int(j)) for i, j in zip(pi, ri)), reverse=True)
    used_p, used_r, out = set(), set(), []
    for v, i, j in cand:
        if v < min_iou:
            break
        if i in used_p or j in used_r:
            continue
        used_p.add(i)
        used_r.add(j)
        out.append((i, j, v))
    return out


@dataclass
class FootprintScores:
    n_pred: int
    n_ref: int
    n_matched: int
    precision: float
    recall: float
    iou_global: float
    iou_mean: float
    ciou_mean: float
    polis_mean_m: float
    n_ratio: float
    hausdorff_mean_m: float
    hausdorff_p90_m: float
    ce90_m: float
    rmse_x_m: float
    rmse_y_m: float

    def as_dict(self) -> dict[str, float]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def footprint_scores(pred: list[Polygon], ref: list[Polygon], min_iou: float = 0.5) -> FootprintScores:
    """All footprint metrics of ``pred`` against ``ref`` (means over matched pairs; see module doc)."""
    m = match(pred, ref, min_iou)
    up = shapely.union_all(pred) if pred else Polygon()
    ur = shapely.union_all(ref) if ref else Polygon()
    uu = up.union(ur).area
    nan = float("nan")
    if not m:
        return FootprintScores(
            len(pred),
            len(ref),
            0,
            0.0,
            0.0,
            float(up.intersection(ur).area / uu) if uu else nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
        )
    ious = [v for _, _, v in m]
    cious = [ciou(pred[i], ref[j]) for i, j, _ in m]
    pol = [polis(pred[i], ref[j]) for i, j, _ in m]
    hd = [hausdorff(pred[i], ref[j]) for i, j, _ in m]
    nr = sum(n_vertices(pred[i]) for i, _, _ in m) / sum(n_vertices(ref[j]) for _, j, _ in m)
    dx = np.array([pred[i].centroid.x - ref[j].centroid.x for i, j, _ in m])
    dy = np.array([pred[i].centroid.y - ref[j].centroid.y for i, j, _ in m])
    return FootprintScores(
        n_pred=len(pred),
        n_ref=len(ref),
        n_matched=len(m),
        precision=len(m) / len(pred),
        recall=len(m) / len(ref),
        iou_global=float(up.intersection(ur).area / uu),
        iou_mean=float(np.mean(ious)),
        ciou_mean=float(np.mean(cious)),
        polis_mean_m=float(np.mean(pol)),
        n_ratio=float(nr),
        hausdorff_mean_m=float(np.mean(hd)),
        hausdorff_p90_m=float(np.percentile(hd, 90)),
        ce90_m=float(np.percentile(np.hypot(dx, dy), 90)),
        rmse_x_m=float(math.sqrt(np.mean(dx**2))),
        rmse_y_m=float(math.sqrt(np.mean(dy**2))),
    )


def shared_wall_scores(polys: list[Polygon], ref: list[Polygon], tol: float = 0.05) -> dict[str, float]:
    """Topology of adjacent buildings: for each pair of reference buildings sharing a wall (common boundary
    longer than 1 m) whose matched predictions both exist, measure the gap area and overlap area between
    the two predictions and whether they still share a wall (common boundary > 50 % of the reference's).

    Returns:
        dict with ``ref_pairs`` (reference pairs sharing a wall), ``pairs`` (those whose two buildings are both
        matched: the pairs measured), ``kept_shared`` (fraction of ``pairs``), ``gap_m2_mean``,
        ``overlap_m2_mean``. ``pairs`` < ``ref_pairs`` when touching buildings were merged or missed.
    """
    m = {j: i for i, j, _ in match(polys, ref)}
    tree = shapely.STRtree(ref)
    ref_pairs = pairs = kept = 0
    gaps, overlaps = [], []
    for a, b in zip(*tree.query(ref, predicate="touches")):
        if a >= b:
            continue
        wall = ref[a].boundary.intersection(ref[b].boundary).length
        if wall < 1.0:
            continue
        ref_pairs += 1
        if a not in m or b not in m:
            continue
        pairs += 1
        pa, pb = polys[m[a]], polys[m[b]]
        overlaps.append(pa.intersection(pb).area)
        # gap: the area between the two predictions inside the union of the two reference buildings
        zone = ref[a].union(ref[b]).buffer(-tol)
        gaps.append(
            zone.difference(pa.union(pb))
            .intersection(ref[a].boundary.intersection(ref[b].boundary).buffer(1.0))
            .area
        )
        common = pa.boundary.intersection(pb.boundary).length
        kept += int(common > 0.5 * wall and overlaps[-1] < 1e-6)
    if not pairs:
        return {
            "ref_pairs": ref_pairs,
            "pairs": 0,
            "kept_shared": float("nan"),
            "gap_m2_mean": float("nan"),
            "overlap_m2_mean": float("nan"),
        }
    return {
        "ref_pairs": ref_pairs,
        "pairs": pairs,
        "kept_shared": kept / pairs,
        "gap_m2_mean": float(np.mean(gaps)),
        "overlap_m2_mean": float(np.mean(overlaps)),
    }
