"""Command line interface: ``sat2lod <command>``. Each command calls the same package function as the
corresponding Snakemake rule, so tests and non-Snakemake users share one code path."""

from __future__ import annotations

import argparse
import logging
import sys

from sat2lod.workflow import cap_threads, setup_logging


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

    for path in args.configs:
        try:
            load_config(path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{path}: valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sat2lod", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=2, help="threads for numba/torch/GDAL (default 2)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate a synthetic city with exact ground truth")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--size-m", type=float, default=600.0, help="side of the square scene (m)")
    p.add_argument("--n-views", type=int, choices=(2, 3), default=3)
    p.add_argument("--gsd-m", type=float, default=0.5)
    p.add_argument("--n-buildings", type=int, default=None)
    p.set_defaults(func=_synth)

    p = sub.add_parser("validate-config", help="validate workflow config files against config/schema.yaml")
    p.add_argument("configs", nargs="+")
    p.set_defaults(func=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(None, logging.DEBUG if args.verbose else logging.INFO)
    cap_threads(args.threads)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
