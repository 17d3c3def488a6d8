"""The official CityJSON 2.0 schemas as jsonschema validators, for the tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema


def official_schemas():
    """Validators of the official CityJSON 2.0 schemas: (CityJSON, CityJSONFeature).

    tests/data/cityjson-2.0.0 holds the official 2.0.0 schemas (see its SOURCE.md); a newer 2.0.x can be
    used by pointing SAT2LOD_CITYJSON_SCHEMA_DIR at a folder with the same two files.
    """
    d = Path(
        os.environ.get("SAT2LOD_CITYJSON_SCHEMA_DIR") or Path(__file__).parent / "data" / "cityjson-2.0.0"
    )
    out = []
    for name in ("cityjson.min.schema.json", "cityjsonfeature.min.schema.json"):
        sch = json.loads((d / name).read_text())
        assert sch["title"].startswith(("CityJSON v2.0", "CityJSONFeature v2.0")), sch["title"]
        cls = jsonschema.validators.validator_for(sch)  # the dialect the schema declares (draft-07)
        cls.check_schema(sch)
        out.append(cls(sch, format_checker=cls.FORMAT_CHECKER))
    return tuple(out)


def schema_errors(validator, doc):
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(json.loads(json.dumps(doc)))
    ]
