"""A pushbroom-like satellite camera in a local projected frame (UTM metres, ellipsoidal heights).

The satellite flies at altitude ``alt`` along the horizontal unit vector u (track azimuth); image row p is
acquisition time (the satellite is over P0 + p * gsd * u); the detector line spreads across track along
c = left of u (so that the image is not mirrored). The line of sight of pixel (p, q), as a horizontal
displacement per metre of descent, is g = tan(pitch(p)) u + (tan(roll) + (q - col0) / k) c, where
pitch(p) = th0 + th1 p + th2 p^2 models a slow attitude drift. A ground point X at height h is seen at
pixel (p, q) when X_h = S(p) + (alt - h) g(p, q).

Earth curvature and refraction are ignored: the RPC models fitted to this camera are the geometric
truth of the synthetic scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALTITUDE_M = 694_000.0  # Pléiades orbit


@dataclass
class PushbroomCamera:
    p0: tuple[float, float]
    track_az: float  # radians, clockwise from north
    alt: float
    gsd: float
    th: tuple[float, float, float]  # pitch polynomial (rad, rad/line, rad/line^2)
    k: float  # pixels per unit tan(across-track angle)
    col0: float
    roll: float  # radians
    rows: int
    cols: int

    @property
    def u(self) -> np.ndarray:
        return np.array([math.sin(self.track_az), math.cos(self.track_az)])

    @property
    def c(self) -> np.ndarray:
        u = self.u
        return np.array([-u[1], u[0]])

    def as_array(self) -> np.ndarray:
        """Parameter vector used by the numba renderer."""
        u, c = self.u, self.c
        return np.array(
            [
                self.p0[0],
                self.p0[1],
                u[0],
                u[1],
                c[0],
                c[1],
                self.alt,
                self.gsd,
                *self.th,
                self.k,
                self.col0,
                math.tan(self.roll),
            ],
            dtype=np.float64,
        )

    def pitch(self, p: np.ndarray) -> np.ndarray:
        return self.th[0] + self.th[1] * p + self.th[2] * p * p

    def ground(self, p: np.ndarray, q: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image (p, q) + height h -> map (x, y). Explicit."""
        p, q, h = np.broadcast_arrays(np.asarray(p, float), np.asarray(q, float), np.asarray(h, float))
        u, c = self.u, self.c
        tt = np.tan(self.pitch(p))
        tf = math.tan(self.roll) + (q - self.col0) / self.k
        gx = tt * u[0] + tf * c[0]
        gy = tt * u[1] + tf * c[1]
        sx = self.p0[0] + p * self.gsd * u[0]
        sy = self.p0[1] + p * self.gsd * u[1]
        return sx + (self.alt - h) * gx, sy + (self.alt - h) * gy

    def project(
        self, x: np.ndarray, y: np.ndarray, h: np.ndarray, iters: int = 30
    ) -> tuple[np.ndarray, np.ndarray]:
        """Map (x, y) + height h -> image (p, q), by fixed-point iteration on the acquisition line."""
        x, y, h = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), np.asarray(h, float))
        u, c = self.u, self.c
        dxu = (x - self.p0[0]) * u[0] + (y - self.p0[1]) * u[1]
        dxc = (x - self.p0[0]) * c[0] + (y - self.p0[1]) * c[1]
        p = (dxu - (self.alt - h) * math.tan(self.th[0])) / self.gsd
        for _ in range(iters):
            p_new = (dxu - (self.alt - h) * np.tan(self.pitch(p))) / self.gsd
            if np.max(np.abs(p_new - p), initial=0.0) < 1e-9:
                p = p_new
                break
            p = p_new
        q = self.col0 + self.k * (dxc / (self.alt - h) - math.tan(self.roll))
        return p, q

    def incidence_deg(self) -> float:
        """Incidence angle (deg from vertical) at the image centre."""
        tt = math.tan(self.pitch(self.rows / 2))
        tf = math.tan(self.roll)
        return math.degrees(math.atan(math.hypot(tt, tf)))

    def view_azimuth_deg(self) -> float:
        """Azimuth (deg, clockwise from north) from the ground toward the satellite at the image centre."""
        tt = math.tan(self.pitch(self.rows / 2))
        g = tt * self.u + math.tan(self.roll) * self.c
        # the satellite is in direction -g from the ground point
        return math.degrees(math.atan2(-g[0], -g[1])) % 360.0


def make_camera(
    bounds: tuple[float, float, float, float],
    hmin: float,
    hmax: float,
    pitch_deg: float,
    roll_deg: float,
    track_az_deg: float,
    gsd: float,
    drift: tuple[float, float] = (0.0, 0.0),
    margin_px: int = 8,
) -> PushbroomCamera:
    """A camera whose image just covers ``bounds`` (map xmin, ymin, xmax, ymax) over [hmin, hmax]."""
    alt = ALTITUDE_M
    href = 0.5 * (hmin + hmax)
    cam = PushbroomCamera(
        p0=(0.0, 0.0),
        track_az=math.radians(track_az_deg),
        alt=alt,
        gsd=gsd,
        th=(math.radians(pitch_deg), drift[0], drift[1]),
        k=(alt - href) / gsd,
        col0=0.0,
        roll=math.radians(roll_deg),
        rows=1,
        cols=1,
    )
    xmin, ymin, xmax, ymax = bounds
    # start with the image origin near the AOI centre (so that the drift polynomial stays small)
    g0 = math.tan(cam.th[0]) * cam.u + math.tan(cam.roll) * cam.c
    cam.p0 = (0.5 * (xmin + xmax) - (alt - href) * g0[0], 0.5 * (ymin + ymax) - (alt - href) * g0[1])
    cx, cy = np.array([xmin, xmin, xmax, xmax] * 2), np.array([ymin, ymax, ymin, ymax] * 2)
    ch = np.array([hmin] * 4 + [hmax] * 4)
    for _ in range(3):
        p, q = cam.project(cx, cy, ch)
        shift_p = float(p.min()) - margin_px
        shift_q = float(q.min()) - margin_px
        u, c = cam.u, cam.c
        cam.p0 = (cam.p0[0] + shift_p * gsd * u[0], cam.p0[1] + shift_p * gsd * u[1])
        # shifting the origin along c moves q by -shift / gsd at href
        cam.p0 = (cam.p0[0] + shift_q * gsd * c[0], cam.p0[1] + shift_q * gsd * c[1])
        # the drift is expressed in lines from the image start: keep th0 the pitch at row 0
    p, q = cam.project(cx, cy, ch)
    cam.rows = int(math.ceil(p.max())) + margin_px + 1
    cam.cols = int(math.ceil(q.max())) + margin_px + 1
    return cam
