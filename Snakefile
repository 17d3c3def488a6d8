# sat2lod: satellite stereo imagery -> DSM, DTM, ortho, building masks, LOD0/1/2 city models.
# Thin on purpose: the stages live in rules/<stage>.smk, the algorithms in the package src/sat2lod.
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version, validate

import sys

from sat2lod.config import load_schema, normalize_numbers
from sat2lod.workflow import (
    claim_run_directory,
    guard_run_directory,
    release_run_directory,
    run_overview,
)

min_version("9.0")


configfile: "config/config.yaml"


# YAML 1.1 numbers ("1e-6" is a string) and NaN/inf, which the schema's bounds let through (sat2lod.config)
# (the package's schema: the same file as config/schema.yaml, tests/test_config.py)
normalize_numbers(config, load_schema(), "config")


validate(config, "config/schema.yaml")


# --unlock while another run is alive in this directory is refused (both runs would fail and delete each
# other's outputs); the live run is recorded in .snakemake/sat2lod_run.json (sat2lod.workflow)
guard_run_directory(sys.argv)


onsuccess:
    release_run_directory()


onerror:
    release_run_directory()


include: "rules/common.smk"
include: "rules/synth.smk"
include: "rules/acquire.smk"
include: "rules/tiling.smk"
include: "rules/stereo.smk"
include: "rules/terrain.smk"
include: "rules/ortho.smk"
include: "rules/segment.smk"
include: "rules/lod.smk"
include: "rules/qualify.smk"
include: "rules/figures.smk"


rule all:
    default_target: True
    input:
        final_outputs(),


onstart:
    claim_run_directory()
    # The first lines of a run: what will run and roughly how long (sat2lod.workflow.run_overview).
    for line in run_overview(
        config,
        workflow.resource_settings.cores,  # None with a cluster executor (workflow.cores would raise)
        config["segmentation"]["checkpoint"]
        or "the default model shipped in the package",
        trains=trains_segmenter() and not Path(TRAINED_SEGMENTER).exists(),
    ):
        logger.info(line)
