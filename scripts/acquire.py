"""Adapter of rule ``acquire``: scenes -> verified downloads + scene sheet (sat2lod.acquire.acquire)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.acquire.pipeline import acquire

inp = snakemake.input  # noqa: F821
truth_keys = ("dsm", "dtm", "ndsm", "classes", "buildings")
truth = {k: inp.get(f"ref_{k}") for k in truth_keys} if inp.get("ref_dsm") else None

acquire(
    aoi=snakemake.wildcards.aoi,  # noqa: F821
    sheet=snakemake.output.sheet,  # noqa: F821
    downloads=snakemake.output.downloads,  # noqa: F821
    catalog_dir=snakemake.output.catalog,  # noqa: F821
    synthetic_scene=inp.get("scene"),
    truth=truth,
    providers_file=inp.get("providers"),
    epsg=snakemake.params.epsg,  # noqa: F821
    bbox_lonlat=snakemake.params.bbox_lonlat,  # noqa: F821
    **snakemake.params.source,  # noqa: F821
)
