"""Command line interface: ``sat2lod <command>``.

The workflow itself runs with ``snakemake``; these commands are helpers that call the same package
functions as the workflow, so tests and non-Snakemake users share one code path.
"""

from __future__ import annotations

import argparse
import logging
import sys

import sat2lod
from sat2lod.workflow import cap_threads, setup_logging

_DESCRIPTION = (
    "sat2lod: satellite stereo imagery (RPC) to DSM, DTM, ortho, building masks and LOD0/1/2 city models. "
    "The workflow runs with `snakemake --cores all` in the repository; these commands are helpers "
    "that call the same package functions."
)


def _synth(args: argparse.Namespace) -> int:
    from sat2lod.synth import generate_city

    meta = generate_city(
        args.out,
        seed=args.seed,
        size_m=args.size_m,
        n_views=args.n_views,
        gsd_m=args.gsd_m,
        n_buildings=args.n_buildings,
    )
    print(f"{meta['n_buildings']} buildings, {len(meta['views'])} views -> {args.out}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from sat2lod.config import ConfigError, load_config

    status = 0
    for path in args.configs:
        try:
            load_config(path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = 1
            continue
        print(f"{path}: valid")
    return status


# --- sat2lod segment: building mask of one image (sat2lod.segment.image) ---------------------------------
def _segment(args: argparse.Namespace) -> int:
    from sat2lod.segment.image import segment_image_file

    try:
        info = segment_image_file(
            args.image,
            args.out,
            ndsm=args.ndsm,
            gsd_m=args.gsd_m,
            method=args.method,
            checkpoint=args.checkpoint,
            threshold=args.threshold,
            min_area_m2=args.min_area_m2,
            ndvi_bands=args.ndvi_bands,
            max_ndvi=args.max_ndvi,
            device=args.device,
            threads=args.torch_threads,
            plausibility={"enabled": args.plausibility, "max_roughness_m": args.max_roughness_m},
            roof_completion={"enabled": args.roof_completion},
            guided_filter={"radius_m": args.guided_radius_m},
        )
    except (
        OSError,
        ValueError,
        RuntimeError,
    ) as exc:  # missing / unreadable files, bad arguments: the message says
        print(f"sat2lod segment: {exc}", file=sys.stderr)
        return 1
    print(
        f"{info['building_fraction']:.1%} of {args.image} labelled building ({info['method']}) -> {args.out}"
    )
    return 0


def _add_segment(sub: argparse._SubParsersAction) -> None:
    from sat2lod.schema import defaults

    seg = defaults("segmentation")  # the rule segment's defaults: one definition
    p = sub.add_parser(
        "segment",
        help="building mask (0/1 uint8) of one image, with or without an nDSM",
        description="Write the 0/1 building mask of one image (GeoTIFF, or PNG/JPEG/TIFF without "
        "georeferencing) with the U-Net (default: the model shipped with sat2lod) or the nDSM threshold. "
        "An RGB image is made panchromatic as the mean of its colour bands; an ortho written by sat2lod "
        "(band 1 PAN, then MS bands) uses its PAN band. Without --ndsm the U-Net runs on the image alone. "
        "With red and near-infrared bands the probability goes through the NDVI vegetation gate of the rule "
        "segment; with --ndsm, its plausibility filter drops components without walls all round. The output "
        "keeps the input's georeferencing.",
    )
    p.add_argument("--image", required=True, help="image file (GeoTIFF, TIFF, PNG, JPEG)")
    p.add_argument("--ndsm", default=None, help="nDSM (m above terrain) on the image's grid (optional)")
    p.add_argument("--out", required=True, help="output mask (.tif: GeoTIFF, nodata 255; or .png)")
    p.add_argument("--method", choices=("unet", "ndsm_threshold"), default=seg["method"])
    p.add_argument(
        "--checkpoint",
        default=None,
        help="model file (default: the model shipped with sat2lod; without --ndsm its image-only model)",
    )
    p.add_argument(
        "--gsd-m", type=float, default=None, help="pixel size (m) of an image without georeferencing"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=seg["threshold"],
        help=f"probability threshold (default {seg['threshold']})",
    )
    p.add_argument(
        "--min-area-m2",
        type=float,
        default=seg["min_area_m2"],
        help=f"smallest building kept (m², default {seg['min_area_m2']})",
    )
    p.add_argument(
        "--ndvi-bands",
        type=int,
        nargs=2,
        metavar=("RED", "NIR"),
        default=None,
        help="1-based numbers of the red and near-infrared bands: enables the NDVI vegetation gate "
        "(e.g. 1 4 for R, G, B, NIR). For an ortho written by sat2lod they number its MS bands after the "
        f"PAN band, default {' '.join(map(str, seg['ndvi_bands']))} (segmentation.ndvi_bands); for other "
        "images default: the bands the file declares red and NIR, else no gate",
    )
    p.add_argument(
        "--max-ndvi",
        type=float,
        default=seg["max_ndvi"],
        help=f"NDVI above which a pixel is vegetation, not building (default {seg['max_ndvi']})",
    )
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default=seg["device"])
    p.add_argument(
        "--no-plausibility",
        dest="plausibility",
        action="store_false",
        default=defaults("segmentation", "plausibility")["enabled"],
        help="keep every mask component; by default, with --ndsm, components without walls all round (crags, "
        "terraces, canopy patches) are dropped (segmentation.plausibility, walls measured on the nDSM)",
    )
    p.add_argument(
        "--max-roughness-m",
        type=float,
        metavar="M",
        default=defaults("segmentation", "plausibility")["max_roughness_m"],
        help="with --ndsm, also drop the components whose nDSM is rougher than this (median |Laplacian|, m): tree "
        "crowns on a LiDAR nDSM, whose roofs are smooth (0.2 on IGN LiDAR HD at 0.5 m: "
        "docs/segmentation.md); not on a stereo nDSM, whose roofs are as rough as crowns (default: no limit, "
        "segmentation.plausibility.max_roughness_m)",
    )
    p.add_argument(
        "--no-roof-completion",
        dest="roof_completion",
        action="store_false",
        default=defaults("segmentation", "roof_completion")["enabled"],
        help="leave each component as the network drew it; by default, with --ndsm, the raised planar cells "
        "next to it join it (the rest of a half-labelled roof: segmentation.roof_completion)",
    )
    p.add_argument(
        "--guided-radius-m",
        type=float,
        metavar="M",
        default=defaults("segmentation", "guided_filter")["radius_m"],
        help="radius (m) of the image-guided refinement of the U-Net probability along the image's edges "
        "(segmentation.guided_filter; default %(default)s, 0 = off)",
    )
    p.add_argument(
        "--threads",
        dest="torch_threads",
        type=int,
        metavar="N",
        default=seg["torch_threads"],
        help="torch CPU threads of the inference, fixed for bit-identical masks "
        f"(default {seg['torch_threads']}, segmentation.torch_threads)",
    )
    p.set_defaults(func=_segment)


# --- end sat2lod segment -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sat2lod", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"sat2lod {sat2lod.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks on errors")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="threads for numba/torch/GDAL (default 2); `segment --threads` sets torch's for the inference",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "synth",
        help="write a synthetic city with exact ground truth (the demo's and the tests' input)",
        description="Write a synthetic city: stereo views with RPCs and the exact truth (DSM, DTM, "
        "nDSM, classes, building polygons) on a 0.5 m UTM grid, as the rule synth_city does.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--size-m", type=float, default=600.0, help="side of the square scene in m (default 600)")
    p.add_argument("--n-views", type=int, choices=(2, 3), default=3, help="number of views (default 3)")
    p.add_argument("--gsd-m", type=float, default=0.5, help="ground sampling distance in m (default 0.5)")
    p.add_argument(
        "--n-buildings", type=int, default=None, help="number of buildings (default: from the scene size)"
    )
    p.set_defaults(func=_synth)

    p = sub.add_parser(
        "validate-config",
        help="check workflow config files against config/schema.yaml without running anything",
        description="Check workflow config files against config/schema.yaml (unknown keys, types, "
        "bounds). Prints one line per file; exits 1 if any is invalid.",
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML config file(s)")
    p.set_defaults(func=_validate)

    _add_segment(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(None, logging.DEBUG if args.verbose else logging.INFO)
    cap_threads(args.threads)
    try:
        return int(args.func(args))
    except (OSError, ValueError) as exc:
        if args.verbose:
            raise
        # bad input (a missing file, a wrong value): one line naming it, no traceback (-v shows one)
        print(f"sat2lod {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
