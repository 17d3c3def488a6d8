# Image for `snakemake --profile profiles/kubernetes`: every pod runs it, so it holds the WHOLE workflow
# environment (Python 3.11, the pinned stack of pyproject.toml, snakemake + the S3 storage plugin, the
# sat2lod package). The workflow files themselves (Snakefile, rules/, scripts/, config/) reach the pods
# through S3 (snakemake's source archive), so rebuild and retag the image whenever src/ or the pins change:
#
#   docker build -t registry.example.org/sat2lod:$(git describe --always) .
#   docker push registry.example.org/sat2lod:$(git describe --always)
#   export SAT2LOD_IMAGE=registry.example.org/sat2lod:$(git describe --always)
#
# CPU build by default. For CUDA torch: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# rasterio, pyogrio, pyproj and shapely wheels bundle GDAL/PROJ/GEOS: no system GIS libraries needed;
# ca-certificates for HTTPS to S3.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/sat2lod
COPY pyproject.toml README.md ./
COPY src ./src
# Exact pins come from pyproject.toml ([project] dependencies + the kubernetes extra).
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" ".[kubernetes]" \
 && pip wheel --no-cache-dir --no-deps -w /opt/sat2lod/wheels "snakemake-storage-plugin-s3==0.3.6" \
 && python -c "import sat2lod, snakemake, snakemake_storage_plugin_s3, rasterio, torch, numba"

# Each pod starts with `pip install --target .snakemake/pip-deployments <storage plugins>` (snakemake's
# remote-job precommand). These settings make that step offline and inert: the plugin wheel comes from
# the image (no PyPI access needed from the cluster) and no dependency is pulled in that could shadow
# the image's pinned versions (it would otherwise fetch the newest boto3/packaging).
ENV PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/opt/sat2lod/wheels \
    PIP_NO_DEPS=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg

# The Kubernetes executor mounts an emptyDir at /workdir and runs `/bin/sh -c <job command>` there
# (its command/args replace CMD).
WORKDIR /workdir
CMD ["python", "-m", "snakemake", "--version"]
