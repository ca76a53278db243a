"""Strict contract checks of request bodies against the engines' official OpenAPI specs.

Specs (data, not code): ``$P4R_SPECS_DIR`` or ``<repo>/../shared/specs``:

* Elasticsearch: ``elasticsearch/elasticsearch-serverless-openapi.json`` (OpenAPI 3.0.3, one file).
* OpenSearch: ``opensearch/spec/`` (OpenAPI 3.1, split YAML; ``$ref`` across files).

API (all engine arguments are ``"elasticsearch"`` or ``"opensearch"``)::

    specs_dir() -> Path
    specs_available(*engines) -> bool
    require_specs(*engines) -> Path                       # pytest.skip(reason) when absent
    load_spec(engine) -> Spec                             # cached (functools.lru_cache)
    operation(engine, method, path_template) -> (file, json_pointer, operation_object)
    request_schema(engine, method, path_template, content_type=None) -> dict
    schema_by_name(engine, name) -> dict
    validate(engine, schema, instance, *, spec_patches=True) -> list[str]
    assert_valid(engine, schema, instance, *, spec_patches=True) -> None   # AssertionError listing errors
    validate_bulk(engine, lines, *, spec_patches=True) -> list[str]        # NDJSON action/source pairs

``request_schema`` and ``schema_by_name`` return a small JSON schema, ``{"$ref": "urn:p4r:..."}``, that
points into the spec; pass it (or a schema that uses such refs) to ``validate``. ``validate`` also takes
a schema name (str) directly.

Schema names for ``schema_by_name``:

* Elasticsearch: the ``components/schemas`` key, e.g. ``"_types.mapping.TypeMapping"``,
  ``"_global.bulk.OperationContainer"``, ``"_global.bulk.UpdateAction"``.
* OpenSearch: ``"<category>.<Name>"`` where ``<category>`` is a file of ``spec/schemas/`` without
  ``.yaml`` and ``<Name>`` a key of its ``components/schemas``, e.g. ``"_common.mapping.TypeMapping"``,
  ``"_core.bulk.OperationContainer"``, ``"search_pipeline._common.SearchPipelineStructure"``; or the
  ``$ref`` form ``"_common.mapping.yaml#/components/schemas/TypeMapping"`` (file relative to
  ``spec/schemas/``, or ``spec/``-relative when it contains a ``/``, e.g. ``namespaces/indices.yaml#/...``).
* Both: any JSON pointer into a spec file, ``"<file>#/<pointer>"``.

Strictness (the point of this module):

* Every object schema that declares ``properties`` is closed: an unknown key fails, even where the
  spec leaves ``additionalProperties`` unspecified, ``true``, ``{}`` or annotation-only (e.g.
  OpenSearch ``IndexSettings`` has ``additionalProperties: {title: custom_settings}``).
* ``additionalProperties`` (or ``unevaluatedProperties``) given as a real schema is a map
  (``Record<K, V>``, e.g. mapping ``properties``): keys are free, values are validated.
* An object schema with no ``properties`` at all (``{type: object}``, ``additionalProperties: true``)
  is a free-form object (documents, ``doc``, ``upsert``, ``method.parameters``): nothing to close against.
* ``allOf``: the allowed keys are the union over all branches (through ``$ref`` and nested
  ``allOf``/``oneOf``/``anyOf``), the closure is applied once at the outer level and the branches are
  left open, so branches never reject each other's keys.
* ``oneOf``/``anyOf`` without sibling properties: every branch is closed on its own. Elasticsearch's
  ``oneOf`` is evaluated as ``anyOf``: its spec renders TypeScript unions (``A | B``) whose branches
  may overlap (``_types.FieldValue`` lists ``number`` twice), which would make ``oneOf`` reject valid
  values.
* ``discriminator`` (mapping ``Property`` types, analysers, ...): the branch is chosen by the
  discriminator value (explicit ``mapping``, else derived from each branch's ``enum``/``const`` of the
  property); an unknown value fails with the allowed list; a missing value uses OpenSearch's
  ``x-default`` (``object``) or, when there is none, any branch.
* OpenAPI 3.0 (Elasticsearch) is converted to JSON Schema 2020-12: ``nullable: true`` becomes a
  ``null`` alternative, boolean ``exclusiveMinimum``/``exclusiveMaximum`` become numbers; OpenAPI 3.1
  (OpenSearch) is 2020-12 already (``nullable`` is honoured there too). ``x-*`` extensions,
  ``description``, ``default``, ``examples`` etc. are ignored. ``format`` is not asserted.

Spec patches (``spec_patches=True``, the default): a few places where the Elasticsearch OpenAPI
generator loses a shape that its TypeScript source (elastic/elasticsearch-specification) declares are
restored, each listed in ``ES_SPEC_PATCHES``; ``spec_patches=False`` validates against the file as is.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT202012

ENGINES = ("elasticsearch", "opensearch")
ES_FILE = "elasticsearch-serverless-openapi.json"
REPO = Path(__file__).resolve().parents[2]
URN = "urn:p4r:"
_DISC = "x-p4r-discriminator"
_VARIANTS = "x-p4r-variants"
_ANNOTATIONS = {
    "description", "title", "summary", "default", "example", "examples", "externalDocs", "deprecated",
    "readOnly", "writeOnly", "xml", "format", "contentEncoding", "contentMediaType", "$comment", "$schema",
    "$id", "$anchor", "discriminator",
}
_COMPOSITES = ("allOf", "oneOf", "anyOf")
_OBJECT_KEYS = ("properties", "patternProperties", "additionalProperties", "unevaluatedProperties")

# --------------------------------------------------------------------------------------------------
# Spec patches: shapes the Elasticsearch OpenAPI generator drops although the TypeScript spec declares
# them. Each entry replaces one node (JSON pointer into the ES file) with the shape of the TS source.
# --------------------------------------------------------------------------------------------------
_ES_FIELD_VALUE = {"$ref": "#/components/schemas/_types.FieldValue"}
ES_SPEC_PATCHES: dict[str, dict[str, Any]] = {
    # TS: `params?: Dictionary<string, UserDefinedValue>`; the generator renders UserDefinedValue (any
    # JSON value) as `{type: object}`, so `params: {query_value: [0.1, ...]}` would be rejected.
    "/components/schemas/_types.Script/properties/params/additionalProperties": {},
    # TS: `class TermsQuery extends QueryBase implements AdditionalProperties<Field, TermsQueryField>`
    # with `TermsQueryField = FieldValue[] | TermsLookup`; the generator renders the field key as an
    # empty `{type: object}` allOf branch (and omits TermsQueryField/TermsLookup), so
    # `{"terms": {"categories": ["a"]}}` would be rejected. Same shape as OpenSearch's TermsQuery.
    "/components/schemas/_types.query_dsl.TermsQuery": {
        "type": "object",
        "properties": {"boost": {"type": "number"}, "_name": {"type": "string"}},
        "additionalProperties": {
            "anyOf": [
                {"type": "array", "items": _ES_FIELD_VALUE},
                {
                    "type": "object",
                    "properties": {
                        "index": {"type": "string"},
                        "id": {"type": "string"},
                        "path": {"type": "string"},
                        "routing": {"type": "string"},
                    },
                    "required": ["index", "id", "path"],
                },
            ]
        },
        "minProperties": 1,
    },
    # TS: `@shortcut_property includes` on SourceFilter (`_source: ["title"]` means
    # `{includes: ["title"]}`); the generator drops shortcut properties. Same shape as OpenSearch.
    "/components/schemas/_global.search._types.SourceFilter": {
        "oneOf": [
            {"$ref": "#/components/schemas/_types.Fields"},
            {
                "type": "object",
                "properties": {
                    "exclude_vectors": {"type": "boolean"},
                    "excludes": {"$ref": "#/components/schemas/_types.Fields"},
                    "includes": {"$ref": "#/components/schemas/_types.Fields"},
                },
            },
        ]
    },
}


# --------------------------------------------------------------------------------------------------
# Locating and loading the specs
# --------------------------------------------------------------------------------------------------
def specs_dir() -> Path:
    """``$P4R_SPECS_DIR``, else ``<repo>/../shared/specs``."""
    env = os.environ.get("P4R_SPECS_DIR")
    return Path(env).expanduser().resolve() if env else (REPO.parent / "shared" / "specs").resolve()


def _engine_root(engine: str) -> Path:
    _check_engine(engine)
    return specs_dir() / "elasticsearch" if engine == "elasticsearch" else specs_dir() / "opensearch" / "spec"


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")


def specs_available(*engines: str) -> bool:
    for engine in engines or ENGINES:
        root = _engine_root(engine)
        if not ((root / ES_FILE).is_file() if engine == "elasticsearch" else (root / "namespaces").is_dir()):
            return False
    return True


def require_specs(*engines: str) -> Path:
    """The specs folder; ``pytest.skip`` with the reason when an engine's spec is missing."""
    if not specs_available(*engines):
        import pytest

        expected = {"elasticsearch": f"elasticsearch/{ES_FILE}", "opensearch": "opensearch/spec/namespaces/"}
        missing = [e for e in engines or ENGINES if not specs_available(e)]
        pytest.skip(
            f"OpenAPI spec of {', '.join(missing)} not found: no {', '.join(expected[e] for e in missing)} under "
            f"{specs_dir()}; set P4R_SPECS_DIR to the folder holding the engines' specs (see its README.md)"
        )
    return specs_dir()


def _yaml_loader():
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Spec:
    """One engine's spec: its files (loaded lazily, cached), its operations, and transform caches."""

    engine: str
    root: Path
    _docs: dict[str, Any] = field(default_factory=dict)
    _paths: dict[str, tuple[str, dict[str, Any]]] | None = None
    _cache: dict[tuple[str, str, str, bool], Any] = field(default_factory=dict)
    _keys_cache: dict[tuple[str, str, bool], "_Keys"] = field(default_factory=dict)

    def doc(self, file: str) -> Any:
        if file not in self._docs:
            path = self.root / file
            if not path.is_file():
                raise KeyError(f"{self.engine} spec has no file {file!r} (under {self.root})")
            with path.open(encoding="utf-8") as f:
                if file.endswith(".json"):
                    self._docs[file] = json.load(f)
                else:
                    import yaml

                    self._docs[file] = yaml.load(f, Loader=_yaml_loader())
        return self._docs[file]

    def patched_doc(self, file: str) -> Any:
        """The file with ES_SPEC_PATCHES applied (copies only the dicts on the way to each patch)."""
        key = "patched:" + file
        if key not in self._docs:
            root = self.doc(file)
            if self.engine == "elasticsearch" and file == ES_FILE:
                for pointer, value in ES_SPEC_PATCHES.items():
                    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/") if p]
                    root = node = dict(root)  # the loaded original stays untouched
                    for part in parts[:-1]:
                        node[part] = dict(node[part])
                        node = node[part]
                    node[parts[-1]] = value
            self._docs[key] = root
        return self._docs[key]

    def node(self, file: str, pointer: str, patched: bool = True) -> Any:
        node = self.patched_doc(file) if patched else self.doc(file)
        for part in (p for p in pointer.split("/") if p):
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError):
                raise KeyError(f"{self.engine}: no {pointer!r} in {file}") from None
        return node

    def resolve_ref(self, ref: str, file: str) -> tuple[str, str]:
        """(file, pointer) that ``ref`` (found in ``file``) points at."""
        target, _, pointer = ref.partition("#")
        if target:
            file = posixpath.normpath(posixpath.join(posixpath.dirname(file), target))
        return file, pointer

    def paths(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """path template -> (file holding it, path item)."""
        if self._paths is None:
            self._paths = {}
            files = [ES_FILE] if self.engine == "elasticsearch" else sorted(
                "namespaces/" + p.name for p in (self.root / "namespaces").glob("*.yaml"))
            for file in files:
                for path, item in (self.doc(file).get("paths") or {}).items():
                    self._paths.setdefault(path, (file, item))
        return self._paths


@functools.lru_cache(maxsize=None)
def load_spec(engine: str) -> Spec:
    root = _engine_root(engine)
    if not specs_available(engine):
        raise FileNotFoundError(f"{engine} spec not found under {root}")
    spec = Spec(engine, root)
    if engine == "elasticsearch":
        spec.doc(ES_FILE)
    return spec


# --------------------------------------------------------------------------------------------------
# Addressing schemas
# --------------------------------------------------------------------------------------------------
def _urn(engine: str, mode: str, file: str, pointer: str) -> str:
    return f"{URN}{engine}:{mode}:{quote(file + '#' + pointer, safe='/._-')}"


def _parse_urn(uri: str) -> tuple[str, str, str, str]:
    engine, mode, loc = uri[len(URN):].split(":", 2)
    file, _, pointer = unquote(loc).partition("#")
    return engine, mode, file, pointer


def _norm_path(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", "/" + path.strip().strip("/"))


def operation(engine: str, method: str, path_template: str) -> tuple[str, str, dict[str, Any]]:
    """(file, JSON pointer, operation object) of ``METHOD path_template`` (parameter names may differ)."""
    spec = load_spec(engine)
    paths = spec.paths()
    wanted = _norm_path(path_template)
    matches = [p for p in paths if _norm_path(p) == wanted]
    if not matches:
        close = difflib.get_close_matches(path_template, list(paths), n=5)
        raise KeyError(f"{engine} spec has no path {path_template!r}; close: {close}")
    path = path_template if path_template in matches else matches[0]
    file, item = paths[path]
    op = item.get(method.lower())
    if op is None:
        methods = [m for m in item if not m.startswith("x-")]
        raise KeyError(f"{engine} spec has no {method.upper()} {path} (has: {methods})")
    pointer = "/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method.lower()
    return file, pointer, op


def request_schema(engine: str, method: str, path_template: str, content_type: str | None = None) -> dict[str, Any]:
    """The request body schema of an operation, e.g. ``("elasticsearch", "PUT", "/{index}")``.

    Follows a ``$ref`` to ``components/requestBodies`` (in another file for OpenSearch) and takes the
    ``application/json`` schema (else ``application/x-ndjson``, else the only one)."""
    spec = load_spec(engine)
    file, pointer, op = operation(engine, method, path_template)
    if "requestBody" not in op:
        raise KeyError(f"{engine} {method.upper()} {path_template} has no request body")
    pointer += "/requestBody"
    body = op["requestBody"]
    while "$ref" in body:
        file, pointer = spec.resolve_ref(body["$ref"], file)
        body = spec.node(file, pointer)
    content = body.get("content") or {}
    for ctype in [content_type] if content_type else ["application/json", "application/x-ndjson", *content]:
        if ctype in content:
            break
    else:
        raise KeyError(
            f"{engine} {method.upper()} {path_template}: no {content_type or 'JSON'} body in {list(content)}")
    pointer += "/content/" + ctype.replace("~", "~0").replace("/", "~1") + "/schema"
    return {"$ref": _urn(engine, "closed", file, pointer)}


def _locate(engine: str, name: str) -> tuple[str, str]:
    spec = load_spec(engine)
    if "#" in name:
        file, _, pointer = name.partition("#")
        if engine == "elasticsearch":
            file = file or ES_FILE
        elif "/" not in file:
            file = "schemas/" + file
        return file, pointer
    if engine == "elasticsearch":
        return ES_FILE, "/components/schemas/" + name
    category, _, short = name.rpartition(".")
    if not category:
        raise KeyError(f"opensearch schema names are '<category>.<Name>' or '<file>#<pointer>', not {name!r}")
    file = f"schemas/{category}.yaml"
    if not (spec.root / file).is_file():
        raise KeyError(f"opensearch spec has no schema file {file}")
    return file, "/components/schemas/" + short


def schema_by_name(engine: str, name: str) -> dict[str, Any]:
    """A named spec schema (see the module docstring for the naming); raises KeyError if absent."""
    spec = load_spec(engine)
    file, pointer = _locate(engine, name)
    try:
        spec.node(file, pointer)
    except KeyError:
        names = list((spec.doc(file).get("components") or {}).get("schemas") or {})
        close = difflib.get_close_matches(pointer.rpartition("/")[2], names, n=5)
        raise KeyError(f"{engine} spec has no schema {name!r}; close: {close}") from None
    return {"$ref": _urn(engine, "closed", file, pointer)}


# --------------------------------------------------------------------------------------------------
# Transformation: spec schema -> strict JSON Schema 2020-12
# --------------------------------------------------------------------------------------------------
@dataclass
class _Keys:
    names: set[str] = field(default_factory=set)
    patterns: set[str] = field(default_factory=set)
    is_map: bool = False  # some branch validates undeclared keys itself (additionalProperties schema)
    closable: bool = False  # some branch declares properties

    def add(self, other: "_Keys") -> None:
        self.names |= other.names
        self.patterns |= other.patterns
        self.is_map |= other.is_map
        self.closable |= other.closable


def _is_open_marker(value: Any) -> bool:
    """``true``, ``{}`` or an annotation-only schema: 'anything goes', which strict mode overrides."""
    return value is True or (isinstance(value, dict) and all(k in _ANNOTATIONS or k.startswith("x-") for k in value))


def _has_validation(node: Mapping[str, Any]) -> bool:
    return any(not (k in _ANNOTATIONS or k.startswith("x-")) for k in node)


class _Transformer:
    def __init__(self, spec: Spec, patched: bool):
        self.spec = spec
        self.engine = spec.engine
        self.patched = patched
        self.is_30 = spec.engine == "elasticsearch"

    # ---- key analysis ------------------------------------------------------------------------
    def keys_at(self, file: str, pointer: str) -> _Keys:
        key = (file, pointer, self.patched)
        cache = self.spec._keys_cache
        if key not in cache:
            cache[key] = _Keys()  # cycle guard: a recursive branch contributes nothing more
            cache[key] = self.keys(self.spec.node(file, pointer, self.patched), file)
        return cache[key]

    def keys(self, node: Any, file: str) -> _Keys:
        out = _Keys()
        if not isinstance(node, dict):
            return out
        if "$ref" in node:
            out.add(self.keys_at(*self.spec.resolve_ref(node["$ref"], file)))
        if "properties" in node:
            out.names |= set(node["properties"] or {})
            out.closable = True
        if node.get("patternProperties"):
            out.patterns |= set(node["patternProperties"])
            out.closable = True
        for kw in ("additionalProperties", "unevaluatedProperties"):
            if kw in node and node[kw] is not False and not _is_open_marker(node[kw]):
                out.is_map = True
        for kw in _COMPOSITES:
            for branch in node.get(kw) or []:
                out.add(self.keys(branch, file))
        return out

    # ---- schema transformation ---------------------------------------------------------------
    def at(self, file: str, pointer: str, mode: str) -> Any:
        key = (file, pointer, mode, self.patched)
        cache = self.spec._cache
        if key not in cache:
            cache[key] = self.t(self.spec.node(file, pointer, self.patched), file, mode)
        return cache[key]

    def ref(self, ref: str, file: str, mode: str) -> dict[str, Any]:
        target_file, pointer = self.spec.resolve_ref(ref, file)
        return {"$ref": _urn(self.engine, mode, target_file, pointer)}

    def closure(self, keys: _Keys) -> dict[str, Any]:
        if not keys.closable or keys.is_map:
            return {}
        out: dict[str, Any] = {"properties": {k: True for k in sorted(keys.names)}, "additionalProperties": False}
        if keys.patterns:
            out["patternProperties"] = {p: True for p in sorted(keys.patterns)}
        return out

    def t(self, node: Any, file: str, mode: str) -> Any:
        """``mode`` is ``closed`` (unknown keys fail here) or ``open`` (an allOf branch: the closure is
        applied by the enclosing schema, over the union of all branches' keys)."""
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            raise TypeError(f"not a schema: {node!r}")
        disc = node.get("discriminator")
        node = {k: v for k, v in node.items() if k not in _ANNOTATIONS and not k.startswith("x-")}

        if node.pop("nullable", False) is True:  # OpenAPI 3.0 (and leftovers in 3.1 files)
            inner = node | ({"discriminator": disc} if disc else {})
            return {"anyOf": [{"type": "null"}, self.t(inner, file, mode)]}
        for kw, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(kw), bool):  # Draft 4 / OpenAPI 3.0 booleans
                if node.pop(kw) and bound in node:
                    node[kw] = node.pop(bound)

        if "$ref" in node:
            ref = node.pop("$ref")
            if not _has_validation(node):
                return self.ref(ref, file, mode)
            node["allOf"] = [{"$ref": ref}, *node.get("allOf", [])]  # 3.1 siblings of $ref

        union_kw = next((kw for kw in ("oneOf", "anyOf") if kw in node), None)
        if disc and union_kw:
            branches = node.pop(union_kw)
            own = self.t(node, file, mode) if _has_validation(node) else None
            d = self.discriminator(disc, branches, file, mode)
            return {"allOf": [own, d]} if own else d

        if "allOf" in node:
            branches = node["allOf"]
            rest = {k: v for k, v in node.items() if k != "allOf"}
            if len(branches) == 1 and not _has_validation(rest):
                return self.t(branches[0], file, mode)
            return self.composite(node, file, mode)

        if union_kw and any(k in node for k in ("properties", "patternProperties")):
            return self.composite(node, file, mode)

        return self.plain(node, file, mode)

    def composite(self, node: dict[str, Any], file: str, mode: str) -> dict[str, Any]:
        """allOf (or properties next to oneOf/anyOf): branches open, one closure over the union of keys."""
        parts = [self.variants(self.t(b, file, "open")) for b in node.get("allOf", [])]
        for kw in ("oneOf", "anyOf"):
            if kw in node:
                parts.append({self.union_keyword(kw): [self.t(b, file, "open") for b in node[kw]]})
        own = {k: v for k, v in node.items() if k not in _COMPOSITES and k != "unevaluatedProperties"}
        if _has_validation(own):
            parts.insert(0, self.plain(own, file, "open"))
        out: dict[str, Any] = {"allOf": parts}
        unevaluated = node.get("unevaluatedProperties")
        if unevaluated is not None and unevaluated is not False and not _is_open_marker(unevaluated):
            out["unevaluatedProperties"] = self.t(unevaluated, file, "closed")  # sees all branches
        if mode == "closed":
            out.update(self.closure(self.keys(node, file)))
        return out

    def variants(self, branch: Any) -> Any:
        """Elasticsearch renders a TS variants container with extra container properties (e.g.
        ``DynamicTemplate``: ``match``/``path_match``/... plus exactly one of ``mapping``/``runtime``) as
        ``allOf: [{common properties}, {variant properties, minProperties: 1, maxProperties: 1}]``; taken
        literally the count would include the common keys and reject every real dynamic template,
        function_score function or rescore. The count is applied to the variant keys only."""
        if not (self.is_30 and isinstance(branch, dict) and "properties" in branch
                and ("minProperties" in branch or "maxProperties" in branch)):
            return branch
        branch = dict(branch)
        branch[_VARIANTS] = {"keys": sorted(branch["properties"]), "min": branch.pop("minProperties", None),
                             "max": branch.pop("maxProperties", None)}
        return branch

    def union_keyword(self, kw: str) -> str:
        return "anyOf" if self.is_30 and kw == "oneOf" else kw

    def plain(self, node: dict[str, Any], file: str, mode: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        declares = "properties" in node or bool(node.get("patternProperties"))
        for k, v in node.items():
            if k == "properties":
                out[k] = {name: self.t(s, file, "closed") for name, s in (v or {}).items()}
            elif k == "patternProperties":
                out[k] = {p: self.t(s, file, "closed") for p, s in (v or {}).items()}
            elif k in ("additionalProperties", "unevaluatedProperties"):
                if v is False:
                    if mode == "closed":
                        out["additionalProperties"] = False
                elif _is_open_marker(v):
                    pass  # open: closed below if properties are declared, else a free-form object
                else:
                    out[k] = self.t(v, file, "closed")  # a map: keys free, values validated
            elif k in ("items", "additionalItems", "contains", "propertyNames", "not", "if", "then", "else"):
                out[k] = self.t(v, file, "closed") if isinstance(v, (dict, bool)) else [
                    self.t(s, file, "closed") for s in v]
            elif k == "prefixItems":
                out[k] = [self.t(s, file, "closed") for s in v]
            elif k in ("dependentSchemas",):
                out[k] = {p: self.t(s, file, "closed") for p, s in v.items()}
            elif k in ("oneOf", "anyOf"):
                out[self.union_keyword(k)] = [self.t(b, file, mode) for b in v]
            else:
                out[k] = copy.deepcopy(v)
        if mode == "closed" and declares and not any(
                k in out for k in ("additionalProperties", "unevaluatedProperties")):
            out["additionalProperties"] = False
        if mode == "open" and out.get("additionalProperties") is False:
            del out["additionalProperties"]  # the enclosing schema closes over the union of keys
        return out

    def discriminator(self, disc: Mapping[str, Any], branches: list[Any], file: str, mode: str) -> dict[str, Any]:
        prop = disc["propertyName"]
        mapping: dict[str, Any] = {}
        for value, ref in (disc.get("mapping") or {}).items():
            mapping[value] = self.ref(ref, file, mode)
        if not mapping:
            for branch in branches:
                for value in self.discriminator_values(branch, file, prop):
                    mapping.setdefault(value, self.t(branch, file, mode))
        fallback = [self.t(b, file, mode) for b in branches]
        return {_DISC: {"propertyName": prop, "mapping": mapping, "default": disc.get("x-default"),
                        "fallback": fallback}}

    def discriminator_values(self, node: Any, file: str, prop: str, seen: frozenset = frozenset()) -> list[str]:
        if not isinstance(node, dict):
            return []
        if "$ref" in node:
            loc = self.spec.resolve_ref(node["$ref"], file)
            if loc in seen:
                return []
            return self.discriminator_values(self.spec.node(*loc, self.patched), loc[0], prop, seen | {loc})
        out: list[str] = []
        schema = (node.get("properties") or {}).get(prop)
        if isinstance(schema, dict):
            out += list(schema.get("enum") or []) + ([schema["const"]] if "const" in schema else [])
        for branch in node.get("allOf") or []:
            out += self.discriminator_values(branch, file, prop, seen)
        return out


def _discriminator_keyword(validator, disc, instance, schema):
    if not validator.is_type(instance, "object"):
        yield ValidationError(f"{instance!r} is not of type 'object'")
        return
    prop = disc["propertyName"]
    mapping = disc["mapping"]
    if prop in instance:
        value = instance[prop]
        if isinstance(value, str) and value in mapping:
            yield from validator.descend(instance, mapping[value])
        else:
            yield ValidationError(
                f"{prop}={value!r} is not a known {prop}; expected one of {sorted(mapping)}",
                validator="discriminator", path=[prop])
    elif disc.get("default") in mapping:
        yield from validator.descend(instance, mapping[disc["default"]])
    else:
        errors = []
        for i, branch in enumerate(disc["fallback"]):
            branch_errors = list(validator.descend(instance, branch, schema_path=i))
            if not branch_errors:
                return
            errors += branch_errors
        yield ValidationError(f"{instance!r} has no {prop!r} and matches none of the {prop} variants",
                              context=errors)


def _variants_keyword(validator, spec, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    keys = spec["keys"]
    present = [k for k in keys if k in instance]
    shown = keys if len(keys) <= 12 else keys[:12] + ["..."]
    if spec.get("max") is not None and len(present) > spec["max"]:
        yield ValidationError(f"at most {spec['max']} of {shown} may be given, got {present}")
    if spec.get("min") is not None and len(present) < spec["min"]:
        yield ValidationError(f"at least {spec['min']} of {shown} is required, got {present}")


_Validator = jsonschema.validators.extend(
    Draft202012Validator, {_DISC: _discriminator_keyword, _VARIANTS: _variants_keyword})


@functools.lru_cache(maxsize=None)
def _registry(engine: str, patched: bool) -> Registry:
    spec = load_spec(engine)
    transformer = _Transformer(spec, patched)

    def retrieve(uri: str) -> Resource:
        if not uri.startswith(URN):
            raise NoSuchResource(ref=uri)
        uri_engine, mode, file, pointer = _parse_urn(uri)
        if uri_engine != engine:
            raise NoSuchResource(ref=uri)
        return Resource.from_contents(transformer.at(file, pointer, mode), default_specification=DRAFT202012)

    return Registry(retrieve=retrieve)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------
def _json_path(path: Iterable[Any]) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if re.fullmatch(r"[\w@-]+", str(part)) else f"[{part!r}]"
    return out


def _closest_branch(error: ValidationError) -> list[ValidationError]:
    """The errors of the oneOf/anyOf branch the instance most likely meant: not one that rejects the
    instance's own type/value outright, then the one whose errors go deepest, then the fewest errors."""
    branches: dict[Any, list[ValidationError]] = {}
    for e in error.context:
        branches.setdefault(e.relative_schema_path[0] if e.relative_schema_path else None, []).append(e)

    def rank(errors: list[ValidationError]) -> tuple:
        return (any(_mismatch(e) for e in errors),
                any(e.validator == "required" and not e.relative_path for e in errors),
                -max(len(e.relative_path) for e in errors), len(errors))

    return min(branches.values(), key=rank)


def _mismatch(error: ValidationError) -> bool:
    """The instance itself has the wrong type/value for this schema (so it meant another branch)."""
    if error.relative_path:
        return False
    if error.validator in ("type", "const", "enum"):
        return True
    return bool(error.context) and all(_mismatch(e) for e in error.context if not e.relative_path) and all(
        not e.relative_path for e in error.context)


def _describe(error: ValidationError, depth: int = 0) -> str:
    message = _short(error) if error.context else error.message
    shown = repr(error.instance)
    if len(shown) > 80 and message.startswith(shown):  # jsonschema leads with the whole instance
        message = shown[:60] + "..." + shown[-12:] + message[len(shown):]
    line = f"{_json_path(error.absolute_path)}: {message if len(message) <= 300 else message[:297] + '...'}"
    if error.context and depth < 8:
        for sub in _closest_branch(error)[:3]:
            line += f"\n{'  ' * (depth + 1)}closest: {_describe(sub, depth + 1)}"
    return line


def _short(error: ValidationError) -> str:
    return f"not valid under any of the given schemas ({error.validator})"


def _as_schema(engine: str, schema: Any) -> Any:
    return schema_by_name(engine, schema) if isinstance(schema, str) else schema


def validate(engine: str, schema: Any, instance: Any, *, spec_patches: bool = True) -> list[str]:
    """Errors of ``instance`` against ``schema`` (from ``request_schema``/``schema_by_name``, or a name)."""
    _check_engine(engine)
    validator = _Validator(_as_schema(engine, schema), registry=_registry(engine, spec_patches))
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    return list(dict.fromkeys(_describe(e) for e in errors))  # allOf branches may repeat one error


def assert_valid(engine: str, schema: Any, instance: Any, *, spec_patches: bool = True) -> None:
    errors = validate(engine, schema, instance, spec_patches=spec_patches)
    if errors:
        raise AssertionError(f"{engine}: {len(errors)} contract error(s):\n" + "\n".join(f"- {e}" for e in errors))


BULK_SCHEMAS = {
    "elasticsearch": ("_global.bulk.OperationContainer", "_global.bulk.UpdateAction"),
    "opensearch": ("_core.bulk.OperationContainer", "_core.bulk.UpdateAction"),
}


def validate_bulk(engine: str, lines: Iterable[Any], *, spec_patches: bool = True) -> list[str]:
    """Errors of NDJSON bulk lines (dicts, or JSON strings): each action line against the engine's
    ``OperationContainer``; the line after ``update`` against ``UpdateAction``; the line after ``index``
    or ``create`` must be a JSON object (the document); ``delete`` has no source line."""
    action_schema, update_schema = BULK_SCHEMAS[engine]
    items = [json.loads(x) if isinstance(x, (str, bytes)) else x for x in lines]
    errors: list[str] = []
    i = 0
    while i < len(items):
        action = items[i]
        errors += [f"line {i + 1}: {e}" for e in validate(engine, action_schema, action, spec_patches=spec_patches)]
        verb = next(iter(action), None) if isinstance(action, dict) and len(action) == 1 else None
        if verb in ("index", "create", "update"):
            if i + 1 >= len(items):
                errors.append(f"line {i + 1}: {verb} action without its source line")
                break
            source = items[i + 1]
            if verb == "update":
                errors += [f"line {i + 2}: {e}"
                           for e in validate(engine, update_schema, source, spec_patches=spec_patches)]
            elif not isinstance(source, dict):
                errors.append(
                    f"line {i + 2}: the document of {verb} must be a JSON object, not {type(source).__name__}")
            i += 2
        else:
            i += 1
    return errors
