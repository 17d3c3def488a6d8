"""sat2lod: satellite stereo imagery (RPC) to DSM, DTM, ortho, building masks and LOD0/1/2 city models.

The package holds the algorithms; the Snakemake workflow (``Snakefile``, ``rules/``, ``scripts/``) only
wires them together. Only the modules in :mod:`sat2lod.io` open files.
"""

__version__ = "0.1.0"

#: Vertical datum tag written in every height product's metadata.
ELLIPSOID_DATUM = "WGS84 ellipsoid (EPSG:4979 heights)"

#: Vertical datum tag of the nDSM (and any other normalized height): metres above the DTM, not above a
#: geodetic surface. The DTM's own datum is kept beside it in the ``DTM_VERTICAL_DATUM`` tag.
HEIGHT_ABOVE_DTM = "height above the DTM (m)"
