"""The per-step conda envs (envs/*.yaml) parse, are pinned, agree with pyproject, and cover their rules.

- Every step env of docs/ARCHITECTURE.md exists, uses conda-forge only, pins every runtime package to an
  exact version, and that version is the one pyproject.toml pins (`==`) for pip.
- Every rule's `conda:` names an existing env, and the third-party packages its script needs (its
  imports, followed through the sat2lod modules it imports) are all in that env.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"
STEP_ENVS = ["synth", "acquire", "stereo", "terrain", "segment", "lod", "qualify", "report"]

# conda-forge package name -> pip distribution name, where they differ
CONDA_TO_PIP = {"pytorch": "torch", "matplotlib-base": "matplotlib", "py-opencv": "opencv-python-headless"}
# build tools of the post-deploy editable install: not runtime pins
BUILD_TOOLS = {"pip", "setuptools", "wheel"}
SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\s*(?P<op>==|=|>=)?\s*(?P<version>[^\s#]*)$")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements() -> dict[str, Requirement]:
    """pyproject's [project] dependencies, by canonical distribution name."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_canon(r.name): r for r in map(Requirement, deps)}


def pyproject_pins() -> dict[str, str]:
    """Exact (==) pins of pyproject's [project] dependencies, by canonical distribution name."""
    pins = {}
    for name, req in pyproject_requirements().items():
        (spec, *more) = list(req.specifier) or [None]
        if spec is not None and not more and spec.operator == "==":
            pins[name] = spec.version
    return pins


def installed_version(name: str) -> str | None:
    try:
        return md.version(name).split("+")[0]  # torch 2.13.0+cpu -> 2.13.0
    except md.PackageNotFoundError:
        return None


def load_env(name: str) -> dict:
    path = ENVS / f"{name}.yaml"
    assert path.is_file(), f"missing conda env {path} (one per step, see docs/ARCHITECTURE.md)"
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and isinstance(env.get("dependencies"), list), (
        f"{path}: not a conda env file"
    )
    return env


def conda_specs(env: dict) -> dict[str, tuple[str | None, str]]:
    """{pip-canonical name: (operator, version)} of an env's conda dependencies."""
    out = {}
    for dep in env["dependencies"]:
        assert isinstance(dep, str), f"pip: sections are not allowed (conda-forge only), found {dep!r}"
        m = SPEC.match(dep.strip())
        assert m, f"unparsable conda spec {dep!r}"
        out[_canon(CONDA_TO_PIP.get(m["name"], m["name"]))] = (m["op"], m["version"])
    return out


def test_pyproject_pins_are_what_pip_installed() -> None:
    """Every exact pin of pyproject matches the installed distribution (envs are checked against these)."""
    pins = pyproject_pins()
    assert {"numpy", "rasterio", "torch", "numba"} <= set(pins), "pyproject must pin the core stack exactly"
    wrong = {n: (v, installed_version(n)) for n, v in pins.items() if installed_version(n) not in (None, v)}
    assert not wrong, f"pyproject pin != installed version: {wrong}"


@pytest.mark.parametrize("step", STEP_ENVS)
def test_env_is_conda_forge_and_pinned_like_pyproject(step: str) -> None:
    env = load_env(step)
    assert env.get("channels") == ["conda-forge", "nodefaults"], f"envs/{step}.yaml: conda-forge only"
    assert env.get("name") == f"sat2lod-{step}"
    reqs = pyproject_requirements()
    specs = conda_specs(env)
    py_op, py_version = specs.pop("python")
    assert py_op == "=" and py_version == "3.11.*", f"envs/{step}.yaml: python=3.11.* (requires-python)"
    for name, (op, version) in specs.items():
        if name in BUILD_TOOLS:
            continue
        assert name in reqs, f"envs/{step}.yaml: {name} is not a [project] dependency of pyproject.toml"
        assert op == "=" and version, f"envs/{step}.yaml: {name} must be pinned exactly (name=version)"
        # the version pip installs: pyproject's exact pin, else (pyproject range) the installed version
        want = pyproject_pins().get(name) or installed_version(name)
        assert version == want, f"envs/{step}.yaml pins {name}={version}, pip installs {want} ({reqs[name]})"
        assert reqs[name].specifier.contains(version), (
            f"envs/{step}.yaml: {name}={version} violates {reqs[name]}"
        )
    for core in ("numpy", "rasterio"):
        assert core in specs, f"envs/{step}.yaml lacks {core}"


@pytest.mark.parametrize("step", STEP_ENVS)
def test_post_deploy_installs_the_package(step: str) -> None:
    script = ENVS / f"{step}.post-deploy.sh"
    assert script.is_file() and script.stat().st_mode & 0o111, f"{script} missing or not executable"
    text = script.read_text()
    assert "pip install --no-deps" in text, "the env pins every dependency; pip must not pull others"


def test_post_deploy_script_installs_this_checkout(tmp_path: Path) -> None:
    """Run a post-deploy script as snakemake would, in a fresh env (a venv standing in for the conda env,
    with the system packages, pip and setuptools standing in for the env's pinned ones): the package is importable from
    this checkout afterwards; run from elsewhere, it stops with a message naming SAT2LOD_SRC."""
    venv = tmp_path / "env"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True
    )
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("SAT2LOD_SRC", None)
    script = ENVS / "lod.post-deploy.sh"
    wrong = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert wrong.returncode != 0 and "SAT2LOD_SRC" in wrong.stderr
    ok = subprocess.run(
        ["bash", str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert ok.returncode == 0, ok.stderr
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sat2lod; print(sat2lod.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).resolve() == (REPO / "src" / "sat2lod" / "__init__.py").resolve()
    # installed into the env itself, not into the system site-packages
    assert list((venv / "lib").glob("python3*/site-packages/*sat2lod*"))


# ------------------------------------------------------------------ rules -> env -> imports
def rule_blocks() -> list[tuple[str, str, str]]:
    """(rule file, rule name, body) of every rule/checkpoint in rules/*.smk."""
    blocks = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        heads = list(re.finditer(r"^(?:rule|checkpoint)\s+(\w+)\s*:", text, re.MULTILINE))
        for h, nxt in zip(heads, heads[1:] + [None]):
            blocks.append((smk.name, h[1], text[h.end() : nxt.start() if nxt else len(text)]))
    return blocks


def directive(body: str, name: str) -> str | None:
    m = re.search(rf"^\s+{name}:\s*\n?\s*\"([^\"]+)\"", body, re.MULTILINE)
    return m[1] if m else None


RULES = [(f, r, b) for f, r, b in rule_blocks() if directive(b, "script")]


def third_party_imports(path: Path, seen: set[Path]) -> set[str]:
    """Top-level third-party modules imported by ``path`` and, transitively, by the sat2lod modules it imports."""
    if path in seen or not path.is_file():
        return set()
    seen.add(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for mod in names:
            top = mod.split(".")[0]
            if top == "sat2lod":
                parts = mod.split(".")
                base = REPO / "src" / Path(*parts)
                for cand in (base.with_suffix(".py"), base / "__init__.py"):
                    found |= third_party_imports(cand, seen)
                # parent packages' __init__ run on import too
                for k in range(1, len(parts)):
                    found |= third_party_imports(REPO / "src" / Path(*parts[:k]) / "__init__.py", seen)
            elif top not in sys.stdlib_module_names and top not in {"snakemake", "__future__"}:
                found.add(top)
    return found


@pytest.mark.parametrize("rule_file,rule,body", RULES, ids=[r for _, r, _ in RULES])
def test_rule_env_covers_its_script_imports(rule_file: str, rule: str, body: str) -> None:
    conda = directive(body, "conda")
    assert conda, f"rules/{rule_file}: rule {rule} has no conda: directive"
    env_path = (REPO / "rules" / conda).resolve()
    assert env_path.parent == ENVS.resolve() and env_path.is_file(), (
        f"rules/{rule_file}: rule {rule} names conda env {conda}, expected one of envs/{{{','.join(STEP_ENVS)}}}.yaml"
    )
    specs = conda_specs(load_env(env_path.stem))
    script = (REPO / "rules" / directive(body, "script")).resolve()
    modules = third_party_imports(script, set())
    dists = md.packages_distributions()
    missing = {}
    for mod in sorted(modules):
        names = {_canon(d) for d in dists.get(mod, [mod])}
        if not names & set(specs):
            missing[mod] = sorted(names)
    assert not missing, f"rule {rule} ({script.name}) imports modules missing from {env_path.name}: {missing}"
