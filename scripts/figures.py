"""Adapter of rule ``figures``: products -> paper figures (sat2lod.figures.make_figures)."""

from sat2lod.workflow import setup

setup(snakemake)  # noqa: F821  (injected by Snakemake)

from sat2lod.figures import make_figures

inp, out, prm = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
make_figures(
    dsm=inp.dsm,
    dtm=inp.dtm,
    ortho=inp.ortho,
    footprints=inp.footprints,
    lod2=inp.lod2,
    accuracy=inp.accuracy,
    ref_dsm=inp.get("ref_dsm"),
    ref_dtm=inp.get("ref_dtm"),
    ref_buildings=inp.get("ref_buildings"),
    out_pngs={name: out[name] for name in prm.names},
    out_pdf=out.pdf,
    done=out.done,
    benchmarks=list(inp.benchmarks),
    **prm.figures,
)
