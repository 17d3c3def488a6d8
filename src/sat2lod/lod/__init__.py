"""Building models: LOD0 footprints (polygonize + regularize), LOD1 blocks, LOD2 roofs, and their metrics.

All coordinates are in the projected output CRS (metres); heights are in the vertical datum of the input
rasters (carried through to the CityJSON metadata).
"""
