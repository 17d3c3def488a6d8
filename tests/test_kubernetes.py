"""profiles/kubernetes without a Kubernetes cluster: local S3 (moto) + a minimal Kubernetes API on 127.0.0.1.

What is exercised (see docs/distribution.md, "Kubernetes: what is tested"):
- the profile parses and a dry run of the workflow resolves every path to the S3 default storage;
- a real run through snakemake-executor-plugin-kubernetes, talking HTTP to a fake API server that
  implements the endpoints the plugin calls (Secrets, Jobs, Job status, Pods). The server records the
  V1Job bodies the plugin submits (image, command, resources, secret-backed env), and, like a kubelet
  without containers, runs each Job's command in a fresh empty directory with only the Secret's env:
  sources and inputs come from S3, outputs go back to S3, exactly as in a pod;
- the same, with the whole sat2lod chain on tests/data/config_tiny.yaml (slow): every rule's Job, the
  tiling checkpoint read back through storage, products in S3 equal to a local run's.
What is not: the image itself (no container runtime here; the Dockerfile is checked statically), the
scheduler, node selection, GPU scheduling, real pod networking.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata as md
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlparse

import numpy as np
import pytest
import yaml

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server", reason="pip install -e .[test] (moto[server])")
pytest.importorskip("snakemake_executor_plugin_kubernetes", reason="pip install -e .[kubernetes]")
pytest.importorskip("snakemake_storage_plugin_s3", reason="pip install -e .[kubernetes]")

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "kubernetes"
TINY_SNAKEFILE = REPO / "tests" / "cluster" / "Snakefile"
BUCKET = "sat2lod-ci"
IMAGE = "registry.example.org/sat2lod:0.1.0-test"
KEY_ID, SECRET = "testing-key-id", "testing-secret"


# ------------------------------------------------------------------ local S3
@contextlib.contextmanager
def local_s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with the bucket; yields its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        s3_client(url).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with local_s3() as url:
        yield url


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )


def profile_env(endpoint: str, prefix: str) -> dict[str, str]:
    """Site variables of profiles/kubernetes + the S3 plugin's credentials, for a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SNAKEMAKE_STORAGE_S3_"))}
    env.update(
        {
            "SAT2LOD_IMAGE": IMAGE,
            "SAT2LOD_S3_PREFIX": f"s3://{BUCKET}/{prefix}",
            "SNAKEMAKE_STORAGE_S3_ENDPOINT_URL": endpoint,
            "SNAKEMAKE_STORAGE_S3_ACCESS_KEY": KEY_ID,
            "SNAKEMAKE_STORAGE_S3_SECRET_KEY": SECRET,
        }
    )
    return env


def run_snakemake(args: list[str], cwd: Path, env: dict[str, str], timeout_s: int) -> str:
    cmd = ["timeout", "-s", "INT", "-k", "30", str(timeout_s), sys.executable, "-m", "snakemake", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"snakemake exited {proc.returncode} ({' '.join(cmd)}):\n{out[-6000:]}")
    return out


# ------------------------------------------------------------------ the image, emulated
def dockerfile_env() -> dict[str, str]:
    """The ENV of ./Dockerfile (what every pod inherits from the image), as a dict."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def plugin_wheelhouse(dest: Path) -> Path:
    """A wheel of the installed S3 storage plugin, rebuilt from its installed files (offline), as the
    Dockerfile's `pip wheel` step leaves in /opt/sat2lod/wheels."""
    dist = md.distribution("snakemake-storage-plugin-s3")
    name = f"snakemake_storage_plugin_s3-{dist.version}-py3-none-any.whl"
    dest.mkdir(parents=True, exist_ok=True)
    skip = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}
    with zipfile.ZipFile(dest / name, "w") as whl:
        files = [f for f in dist.files if "__pycache__" not in f.parts and f.name not in skip]
        record = []
        for f in files:
            whl.write(dist.locate_file(f), str(f))
            record.append(f"{f},,")
        info = next(f for f in dist.files if f.name == "RECORD").parent
        record.append(f"{info}/RECORD,,")
        whl.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return dest


# ------------------------------------------------------------------ minimal Kubernetes API
class FakeKubernetes:
    """The Kubernetes API endpoints snakemake-executor-plugin-kubernetes 0.5.1 calls, on 127.0.0.1.

    Records submitted Jobs and Secrets; with ``run_jobs`` it runs each Job's container command in a fresh
    empty directory (the pod's emptyDir /workdir) with PATH, the image's ENV and the env the Job takes
    from the Secret, nothing else.
    """

    def __init__(self, run_jobs: bool, log_dir: Path, image_env: dict[str, str] | None = None) -> None:
        self.run_jobs = run_jobs
        self.log_dir = log_dir
        self.image_env = image_env or {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.status: dict[str, dict[str, int]] = {}
        self.deleted_secrets: list[str] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def do_POST(self) -> None:
                path = urlparse(self.path).path
                body = self._body()
                if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets", path):
                    with fake.lock:
                        fake.secrets[body["metadata"]["name"]] = {"namespace": m[1], **body}
                    return self._reply(201, body)
                if m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs", path):
                    name = body["metadata"]["name"]
                    with fake.lock:
                        fake.jobs[name] = {"namespace": m[1], **body}
                        fake.status[name] = {"active": 1}
                    if fake.run_jobs:
                        threading.Thread(target=fake._run, args=(name, body), daemon=True).start()
                    return self._reply(201, body)
                self._reply(404, {"kind": "Status", "code": 404, "message": f"fake API: no POST {path}"})

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)/status", url.path):
                    with fake.lock:
                        job = fake.jobs.get(m[2])
                        status = dict(fake.status.get(m[2], {}))
                    if job is None:
                        return self._reply(404, {"kind": "Status", "code": 404})
                    return self._reply(200, {**job, "status": status})
                if re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", url.path):
                    # no pod objects: the plugin then decides from the Job status alone
                    return self._reply(
                        200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}
                    )
                self._reply(404, {"kind": "Status", "code": 404, "message": f"fake API: no GET {url.path}"})

            def do_DELETE(self) -> None:
                path = urlparse(self.path).path
                if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets/([^/]+)", path):
                    fake.deleted_secrets.append(m[2])
                return self._reply(200, {"kind": "Status", "status": "Success"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _secret_env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {}
        for var in container.get("env") or []:
            ref = var["valueFrom"]["secretKeyRef"]
            data = self.secrets[ref["name"]]["data"]
            env[var["name"]] = base64.b64decode(data[ref["key"]]).decode()
        return env

    def _run(self, name: str, body: dict[str, Any]) -> None:
        container = body["spec"]["template"]["spec"]["containers"][0]
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.log_dir))  # the pod's emptyDir
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            # the host's OpenBLAS settings: OPENBLAS_CORETYPE picks OpenBLAS's kernels, hence the last bits of
            # a least-squares fit (synth_city's RPCs), and the pods must compute as the local reference run does
            # (on an AMD host with OPENBLAS_CORETYPE=Haswell set, pods without it fitted other RPC bits and
            # every product downstream differed). A real cluster's nodes use what the image sets.
            **{k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")},
            **self.image_env,
            **self._secret_env(container),
        }
        with open(self.log_dir / f"{name}.log", "w") as log:
            rc = subprocess.run(
                container["command"] + container["args"],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=600,
                check=False,
            ).returncode
        with self.lock:
            self.status[name] = {"succeeded": 1} if rc == 0 else {"failed": 1}

    def kubeconfig(self, path: Path) -> Path:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "ci", "user": {"token": "fake-token"}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "ci", "namespace": "default"}}
            ],
        }
        path.write_text(yaml.safe_dump(cfg))
        return path

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join()


# ------------------------------------------------------------------ tests
def test_dry_run_against_local_s3(tmp_path: Path, s3_endpoint: str) -> None:
    out = run_snakemake(
        ["-s", str(TINY_SNAKEFILE), "--workflow-profile", "none", "--profile", str(PROFILE), "-n"],
        cwd=tmp_path,
        env=profile_env(s3_endpoint, "dryrun"),
        timeout_s=120,
    )
    assert re.search(r"part\s+3", out) and re.search(r"gather\s+1", out), out[-3000:]
    # every path resolved to the S3 default storage
    assert f"s3://{BUCKET}/dryrun/out/sum.txt" in out, out[-3000:]


@pytest.mark.slow  # ~40 s alone on 2 cores: 4 pods, each runs snakemake twice
def test_job_specs_and_run_through_kubernetes_api(tmp_path: Path, s3_endpoint: str) -> None:
    prefix = "k8srun"
    local = tmp_path / "local"
    local.mkdir()
    run_snakemake(
        ["-s", str(TINY_SNAKEFILE), "--workflow-profile", "none", "--cores", "2"],
        cwd=local,
        env=dict(os.environ),
        timeout_s=120,
    )

    launch = tmp_path / "launch"
    launch.mkdir()
    pods = tmp_path / "pods"
    pods.mkdir()
    image_env = dockerfile_env()
    # the image's wheel directory, rebuilt here
    image_env["PIP_FIND_LINKS"] = str(plugin_wheelhouse(tmp_path / "wheels"))
    with FakeKubernetes(run_jobs=True, log_dir=pods, image_env=image_env) as k8s:
        env = profile_env(s3_endpoint, prefix)
        env["KUBECONFIG"] = str(k8s.kubeconfig(tmp_path / "kubeconfig"))
        # a copy of the tiny workflow as the "repository" (sources are shipped to the pods through S3)
        shutil.copy(TINY_SNAKEFILE, launch / "Snakefile")
        # gather asks for a GPU as the segmentation rules do with segmentation.device: cuda
        log = run_snakemake(
            [
                "--workflow-profile",
                "none",
                "--profile",
                str(PROFILE),
                "--seconds-between-status-checks",
                "1",
                "--set-resources",
                "gather:gpu=1",
            ],
            cwd=launch,
            env=env,
            timeout_s=400,
        )
        jobs = dict(k8s.jobs)
        secrets = dict(k8s.secrets)

    pod_logs = "\n".join(p.read_text()[-2000:] for p in pods.glob("*.log"))
    assert len(jobs) == 4, (
        f"expected 3 x part + gather as Kubernetes Jobs, got {list(jobs)}\n{log[-3000:]}\n{pod_logs}"
    )
    # ---- the Job spec the plugin submits
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for job in jobs.values():
        assert job["namespace"] == "default"
        spec = job["spec"]
        assert spec["backoffLimit"] == 0
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        assert pod["volumes"] == [{"name": "workdir", "emptyDir": {}}]
        (c,) = pod["containers"]
        assert c["image"] == IMAGE
        assert c["command"] == ["/bin/sh"] and c["args"][0] == "-c"
        assert c["workingDir"] == "/workdir"
        cmd = c["args"][1]
        assert (
            "--default-storage-provider 's3'" in cmd
            and f"--default-storage-prefix 's3://{BUCKET}/{prefix}'" in cmd
        ), cmd
        assert "--deploy-sources s3://" in cmd, "the workflow sources reach the pod through S3"
        rule = re.search(r"--target-jobs '?(\w+):", cmd)[1]
        by_rule.setdefault(rule, []).append(c)
        # credentials reach the pod through the run's Secret, never in the command line
        assert SECRET not in cmd
        env_names = {e["name"] for e in c["env"]}
        assert {"SNAKEMAKE_STORAGE_S3_ACCESS_KEY", "SNAKEMAKE_STORAGE_S3_SECRET_KEY"} <= env_names
        for e in c["env"]:
            assert e["valueFrom"]["secretKeyRef"]["name"] in secrets
    assert sorted(by_rule) == ["gather", "part"] and len(by_rule["part"]) == 3
    for c in by_rule["part"]:  # threads: 2, mem_mb=200*attempt, default disk_mb 10000
        assert c["resources"]["requests"] == {"cpu": "1900m", "memory": "200M", "ephemeral-storage": "10000M"}
    (g,) = by_rule["gather"]
    assert g["resources"]["requests"]["cpu"] == "950m"
    # GPU request: nvidia.com/gpu (gpu_manufacturer from the profile) and the GPU-node toleration
    assert g["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in by_rule["part"][0]["resources"]["requests"]
    gpod = next(j for j in jobs.values() if j["spec"]["template"]["spec"]["containers"][0] is g)
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in (
        gpod["spec"]["template"]["spec"]["tolerations"]
    )
    # ---- the outputs, produced by the "pods", are in S3 and equal the local run
    s3 = s3_client(s3_endpoint)
    for name in ["part_0.txt", "part_1.txt", "part_2.txt", "sum.txt"]:
        obj = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/out/{name}")["Body"].read().decode()
        assert obj == (local / "out" / name).read_text(), name
    assert not (launch / "out").exists(), "outputs must go to S3, not to the launch directory"


# ------------------------------------------------------------------ the real chain, tiny synthetic scene
TINY_CONFIG = "tests/data/config_tiny.yaml"
# one tile: each per-tile rule runs once as a pod (tests/data/config_one_tile.yaml says why)
ONE_TILE = "tests/data/config_one_tile.yaml"


def git_workflow_copy(dest: Path) -> Path:
    """A copy of the workflow files + the tiny config, made a git repository: snakemake's source archive for
    the pods holds the included files, the scripts, the conda envs, the config files and the git-tracked
    files (config/schema.yaml, read by validate(), is only in the last group)."""
    from sat2lod.io.workdir import copy_workflow

    copy_workflow(dest, REPO, extra=(TINY_CONFIG, ONE_TILE))
    for cmd in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *cmd], cwd=dest, check=True, capture_output=True)
    return dest


def download_prefix(endpoint: str, prefix: str, dest: Path) -> list[str]:
    """Every object under ``<bucket>/<prefix>/`` into ``dest`` (relative keys); returns the keys."""
    s3 = s3_client(endpoint)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/"):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) + 1 :]
            keys.append(rel)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(BUCKET, obj["Key"], str(dest / rel))
    return keys


def same_but_storage_path(a: Path, b: Path, storage: str) -> bool:
    """``b`` equals ``a`` once the pod's local copy prefix of S3 inputs (``storage``, e.g.
    ``.snakemake/storage/s3/<bucket>/<prefix>/``) is removed from the paths it records (raster tags, text)."""
    if a.suffix == ".tif":
        from sat2lod.io.raster import read_raster

        ra, rb = read_raster(a), read_raster(b)
        return (
            (ra.crs, ra.transform, ra.array.dtype, ra.array.shape)
            == (rb.crs, rb.transform, rb.array.dtype, rb.array.shape)
            and {k: v.replace(storage, "") for k, v in rb.tags.items()} == ra.tags
            and np.array_equal(ra.array, rb.array, equal_nan=ra.array.dtype.kind == "f")
        )
    return a.read_text() == b.read_text().replace(storage, "")


def chain_run(tmp: Path) -> dict[str, Any]:
    """The run phase of the chain test, in the background from the session's start (tests/background.py):
    a local reference run and the run through profiles/kubernetes (own moto server, fake API), the S3
    prefix downloaded. Returns the Jobs the plugin submitted and the folders to compare."""
    prefix = "chain"
    launch = git_workflow_copy(tmp / "launch")
    local = git_workflow_copy(tmp / "local")
    pods = tmp / "pods"
    pods.mkdir()
    image_env = dockerfile_env()
    image_env["PIP_FIND_LINKS"] = str(plugin_wheelhouse(tmp / "wheels"))
    # the image holds the package of this checkout (it is the package under test here)
    src = str(REPO / "src")
    image_env["PYTHONPATH"] = src
    # the local reference run goes on while the Kubernetes run mostly waits on pods starting
    ref = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", TINY_CONFIG, ONE_TILE],
        cwd=local,
        env={**os.environ, "PYTHONPATH": src},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        with local_s3() as endpoint, FakeKubernetes(run_jobs=True, log_dir=pods, image_env=image_env) as k8s:
            env = profile_env(endpoint, prefix)
            env["PYTHONPATH"] = src
            env["KUBECONFIG"] = str(k8s.kubeconfig(tmp / "kubeconfig"))
            try:
                run_snakemake(
                    [
                        *("--workflow-profile", "none", "--profile", str(PROFILE)),
                        *("--seconds-between-status-checks", "1", "--configfile", TINY_CONFIG, ONE_TILE),
                    ],
                    cwd=launch,
                    env=env,
                    timeout_s=1500,
                )
            except pytest.fail.Exception as exc:
                last = sorted(pods.glob("*.log"), key=lambda p: p.stat().st_mtime)[-3:]
                logs = "".join(f"\n==== pod log {p.name}\n{p.read_text()[-4000:]}" for p in last)
                pytest.fail(f"{exc}{logs}")
            jobs = dict(k8s.jobs)
            got = tmp / "s3"
            download_prefix(endpoint, prefix, got)
        assert ref.wait(timeout=1500) == 0, f"local reference run failed in {local}"
    finally:
        if ref.poll() is None:
            ref.kill()
    return {"jobs": jobs, "launch": launch, "local": local, "got": got, "prefix": prefix}


@pytest.mark.slow  # minutes on 2 (shared) cores: 23 pods (one tile), each runs snakemake twice, + a local run beside
@pytest.mark.background("chain_run")  # mostly waits on the pods: runs while the rest of the suite does
def test_tiny_sat2lod_chain_through_kubernetes_api(background_run: dict[str, Any]) -> None:
    """The whole chain on tests/data/config_tiny.yaml, one tile (config_one_tile.yaml), (U-Net trained in the run: segmentation.checkpoint
    results/models/segmenter.pt) through profiles/kubernetes: every rule but the local `acquire` and `all`
    in a "pod" that sees only S3; the tiling checkpoint's tile grid is read back through storage
    (tile_ids); the products in S3 equal those of a local run, by content."""
    from sat2lod.io.digest import is_run_record, product_digests

    jobs, launch, local, got, prefix = (
        background_run[k] for k in ("jobs", "launch", "local", "got", "prefix")
    )

    # every rule of the chain ran as a Kubernetes Job (acquire is a localrule: providers need internet)
    rules: dict[str, int] = {}
    for job in jobs.values():
        cmd = job["spec"]["template"]["spec"]["containers"][0]["args"][1]
        rule = re.search(r"--target-jobs '?(\w+):", cmd)[1]
        rules[rule] = rules.get(rule, 0) + 1
    n_tiles = len(json.loads((local / "results/tiles/tiny/tiles.geojson").read_text())["features"])
    assert n_tiles == 1 and rules.pop("stereo_tile") == n_tiles, rules
    for per_tile in ("dtm_tile", "ortho_tile", "segment_tile", "lod0_tile"):
        assert rules.pop(per_tile) == n_tiles, (per_tile, rules)
    for per_tile in ("lod1_tile", "lod2_noise_tile", "lod2_tile"):
        assert rules.pop(per_tile) == n_tiles, (per_tile, rules)
    assert rules == dict.fromkeys(
        ["synth_city", "train_segmenter", "tiles", "mosaic_dsm", "dtm", "ortho_gains", "ortho"]
        + ["segment_range", "segment"]
        + ["lod0", "lod1", "lod2_scene", "lod2", "qualify", "figures"],
        1,
    ), rules
    assert not (launch / "results" / "mosaic").exists(), "outputs must go to S3, not to the launch directory"

    # the products are in S3 and equal the local run's, by content (sat2lod.io.digest)
    for rel in ["lod2/tiny/city.json", "qualify/tiny/accuracy.json", "figures/tiny/done.txt"]:
        assert (got / "results" / rel).is_file(), f"not in S3: results/{rel}"
    cj = json.loads((got / "results/lod2/tiny/city.json").read_text())
    assert cj["type"] == "CityJSON" and len(cj["CityObjects"]) >= 1
    a, b = product_digests(local / "results"), product_digests(got / "results")
    assert a.keys() == b.keys(), set(a) ^ set(b)
    assert any(k.startswith("models/") for k in a) and any(k.startswith("lod2/") for k in a)
    differ = sorted(k for k in a if a[k] != b[k] and not is_run_record(k))
    # products that record their inputs' paths name the pod's local copy of the S3 object (known gap,
    # docs/distribution.md): equal once that prefix is removed, nothing else differs
    storage = f".snakemake/storage/s3/{BUCKET}/{prefix}/"
    differ = [
        k for k in differ if not same_but_storage_path(local / "results" / k, got / "results" / k, storage)
    ]
    assert not differ, f"products that differ between the Kubernetes and the local run: {differ}"
