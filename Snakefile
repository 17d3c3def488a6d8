# sat2lod: satellite stereo imagery -> DSM, DTM, ortho, building masks, LOD0/1/2 city models.
# Thin on purpose: the stages live in rules/<stage>.smk, the algorithms in the package src/sat2lod.
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version, validate

from sat2lod.workflow import run_overview

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


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
    # The first lines of a run: what will run and roughly how long (sat2lod.workflow.run_overview).
    for line in run_overview(
        config,
        workflow.resource_settings.cores,  # None with a cluster executor (workflow.cores would raise)
        SEG_CHECKPOINT or None,
        trains=SEG_CHECKPOINT == "results/models/segmenter.pt"
        and not Path(SEG_CHECKPOINT).exists(),
    ):
        logger.info(line)
