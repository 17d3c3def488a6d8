"""Input files of the ``acquire`` rule for each ``source.kind`` (imported by rules/acquire.smk; no heavy imports)."""

from __future__ import annotations

from typing import Any


def acquire_rule_inputs(
    source: dict[str, Any], aoi: str, synthetic_views: list[str], truth: dict[str, str]
) -> dict[str, Any]:
    """Named inputs of rule ``acquire``.

    Args:
        source: the ``source`` section of the workflow config.
        aoi: the ``{aoi}`` wildcard.
        synthetic_views, truth: ``synthetic_views()`` and ``truth_files()`` of rules/common.smk.
    Returns:
        synthetic: views, scene.json, provider YAML, truth files (``ref_*``, with the nDSM);
        local: the images and their RPC files; stac: the provider YAML.
    """
    kind = source["kind"]
    if kind == "synthetic":
        return {
            "views": synthetic_views,
            "scene": f"results/synth/{aoi}/scene.json",
            "providers": source["providers_file"],
            "ref_ndsm": f"results/synth/{aoi}/truth/ndsm.tif",
            **truth,
        }
    if kind == "local":
        images = source["local"]["images"]
        return {
            "images": [im["image"] for im in images],
            "rpcs": [im["rpc"] for im in images if im.get("rpc")],
        }
    return {"providers": source["providers_file"]}
