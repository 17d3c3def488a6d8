"""The module map of docs/ARCHITECTURE.md is the law: every module of the package is in it, imports only what
its row allows (no private names across packages), and only the modules the I/O rule names open files.
Checked on the source (ast), so the test reads the code as it is, not as it runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "sat2lod"

#: modules (keys of the map) that may open files, besides sat2lod.io (docs/ARCHITECTURE.md, Conventions)
FILE_OPENERS = {
    "sat2lod.io",
    "sat2lod.acquire",
    "sat2lod.config",
    "sat2lod.schema",
    "sat2lod.figures",
    "sat2lod.workflow",
}
#: imports the map does not allow yet, each with the change that removes it
TRANSITIONAL: dict[tuple[str, str], str] = {}
#: calls that open, write or remove files
_FILE_ATTRS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "savefig", "read_csv", "read_file",
               "to_file", "unlink", "rmtree", "copy2", "copyfile", "FileHandler"}  # fmt: skip
_FILE_NAMES = {"open", "PdfPages", "FileHandler"}


def module_map() -> dict[str, set[str]]:
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`sat2lod"):
            out[cells[0].strip("`")] = set(re.findall(r"`(sat2lod[\w.]*)`", cells[2]))
    return out


def _key(module: str, keys: set[str]) -> str | None:
    """The map row of ``module``: the longest row naming it or a package above it (the bare ``sat2lod``
    row is the package's ``__init__`` only)."""
    cands = [k for k in keys if module == k or (k != "sat2lod" and module.startswith(k + "."))]
    return max(cands, key=len) if cands else None


def _modules() -> dict[str, str]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        mod = ".".join(f.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
        out[mod] = f.read_text()
    return out


def violations(module: str, source: str, mmap: dict[str, set[str]], modules: set[str]) -> list[str]:
    """What ``module`` (its ``source``) does against the map: forbidden imports, private names imported
    from another row, files opened outside the rows allowed to."""
    keys = set(mmap)
    own = _key(module, keys)
    if own is None:
        return [
            f"{module}: not in the module map of docs/ARCHITECTURE.md; add a row (or a package row above it)"
        ]
    bad = []
    for node in ast.walk(ast.parse(source)):
        targets: list[tuple[str, list[str]]] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sat2lod":
            names = [a.name for a in node.names]
            subs = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in modules]
            targets += [(s, []) for s in subs]
            rest = [n for n in names if f"{node.module}.{n}" not in modules]
            if rest:
                targets.append((node.module, rest))
        elif isinstance(node, ast.Import):
            targets += [(a.name, []) for a in node.names if a.name.split(".")[0] == "sat2lod"]
        for target, names in targets:
            tkey = _key(target, keys) or ("sat2lod" if target == "sat2lod" else None)
            if tkey is None:
                bad.append(f"{module}:{node.lineno}: imports {target}, which is not in the module map")
                continue
            if tkey != own and tkey not in mmap[own] and (own, tkey) not in TRANSITIONAL:
                bad.append(f"{module}:{node.lineno}: imports {target}; the map lets {own} import only "
                           f"{sorted(mmap[own]) or 'nothing of the package'}")  # fmt: skip
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if tkey != own and private:
                bad.append(f"{module}:{node.lineno}: imports private {private} from {target}; make it public")
        if isinstance(node, ast.Call) and own not in FILE_OPENERS:
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if (isinstance(fn, ast.Attribute) and name in _FILE_ATTRS) or (
                isinstance(fn, ast.Name) and name in _FILE_NAMES
            ):
                bad.append(f"{module}:{node.lineno}: opens files ({ast.unparse(fn)}); go through sat2lod.io")
    return bad


def test_imports_and_file_access_follow_the_module_map():
    mmap = module_map()
    assert len(mmap) >= 15 and "sat2lod.io" in mmap
    mods = _modules()
    bad = [v for m, src in mods.items() for v in violations(m, src, mmap, set(mods))]
    assert not bad, "against docs/ARCHITECTURE.md (Module map):\n" + "\n".join(bad)


def test_transitional_exceptions_are_still_needed():
    """An exception nobody needs any more is removed from TRANSITIONAL (and the map stays the whole truth)."""
    mmap, mods = module_map(), _modules()
    for own, target in TRANSITIONAL:
        used = any(
            _key(m, set(mmap)) == own and re.search(rf"\b(from|import) {re.escape(target)}\b", src)
            for m, src in mods.items()
        )
        assert used, f"{own} no longer imports {target}: remove the exception"


@pytest.mark.parametrize(
    ("module", "source", "expect"),
    [
        ("sat2lod.tiling", "from sat2lod.acquire.files import probe_image\n", "the map lets sat2lod.tiling"),
        ("sat2lod.stereo.triangulate", "from sat2lod.rpc import _project_jacobian\n", "private"),
        ("sat2lod.lod.roof", "import json\nopen('x.json').read()\n", "opens files"),
        ("sat2lod.lod.roof", "from pathlib import Path\nPath('x').write_text('y')\n", "opens files"),
        ("sat2lod.newstage", "import numpy\n", "not in the module map"),
        ("sat2lod.grid", "from sat2lod.lod import roof\n", "the map lets sat2lod.grid"),
    ],
)
def test_the_checker_catches(module, source, expect):
    mods = set(_modules())
    assert any(expect in v for v in violations(module, source, module_map(), mods))
