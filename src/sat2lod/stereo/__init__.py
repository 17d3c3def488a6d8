"""Stereo reconstruction: rectification, census + SGM dense matching, RPC triangulation, DSM rasterization.

Modules:
    rectify      local affine camera approximation and epipolar rectification of a pair over one tile
    pointing     relative pointing correction from matched keypoints (across-epipolar shift)
    sgm          census cost, semi-global matching (numba) with a NumPy reference
    triangulate  RPC intersection of matched pixels (numba Gauss-Newton), residual as a quality layer
    rasterize    points -> DSM grid (mean per cell), hole filling, multi-pair fusion
    pipeline     one tile, end to end (the function behind the ``stereo_tile`` rule)
"""
