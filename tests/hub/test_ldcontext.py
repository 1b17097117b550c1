"""@context resolution, expansion and compaction (sencity.hub.ldcontext, core_context).

The reference documents (ETSI core contexts, FIWARE Smart Data Models) are read from
``../shared/data``; the tests that need them skip when that folder is absent.  Remote
contexts are served by a small HTTP server on 127.0.0.1 started here.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from sencity.errors import BadRequest, ConfigError, LdContextNotAvailable, NotFound
from sencity.hub import ldcontext
from sencity.hub.core_context import (
    CORE_CONTEXT,
    CORE_CONTEXT_URL,
    CORE_CONTEXT_URLS,
    DEFAULT_VOCAB,
    is_core_context_url,
)
from sencity.hub.ldcontext import (
    HOSTED_PREFIX,
    JSONLD_CONTEXT_REL,
    ActiveContext,
    ContextResolver,
    link_header,
    link_header_context,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"
NGSI_LD_DIR = SHARED / "data" / "ngsi-ld"
SDM_DIR = SHARED / "data" / "smart-data-models"
NGSI = "https://uri.etsi.org/ngsi-ld/"
KEYWORDS = {"@id", "@type", "@vocab", "@json", "@none", "@list", "@set", "@index", "@language"}


def test_shared_folder_location() -> None:
    assert Path(__file__).resolve().parent.parent.parent.parent / "shared" == SHARED
    assert (Path(__file__).resolve().parents[2] / "pyproject.toml").exists()


# -- reference documents ----------------------------------------------------------------------
def read_jsonld(path: Path) -> Any:
    """A JSON-LD file; the shared v1.3/v1.4 copies start with their URL on a line of its own."""
    text = path.read_text(encoding="utf-8-sig")
    return json.loads(text[text.index("{") :])


def core_document(version: str) -> dict[str, Any]:
    path = NGSI_LD_DIR / f"ngsi-ld-core-context-v{version}.jsonld"
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared data folder is needed)")
    doc = read_jsonld(path)
    assert isinstance(doc["@context"], dict)
    return doc["@context"]  # type: ignore[no-any-return]


def reference_expand(ctx: dict[str, Any], value: str) -> str:
    """Expands a value the simple way, with one flat context (for checking only)."""
    if value.startswith("@"):
        return value
    if value in ctx:
        target = ctx[value]
        target = target if isinstance(target, str) else target["@id"]
        if target == value:  # "attributeCount": "attributeCount" in v1.3
            return str(ctx["@vocab"]) + value
        return reference_expand(ctx, target)
    prefix, colon, suffix = value.partition(":")
    if colon and prefix in ctx and isinstance(ctx[prefix], str):
        return str(ctx[prefix]) + suffix
    if colon:
        return value
    return str(ctx["@vocab"]) + value


def definition_of(ctx: dict[str, Any], term: str) -> dict[str, Any]:
    raw = ctx[term]
    raw = {"@id": raw} if isinstance(raw, str) else dict(raw)
    out: dict[str, Any] = {"@id": reference_expand(ctx, term)}
    if "@type" in raw:
        out["@type"] = reference_expand(ctx, raw["@type"])
    if "@container" in raw:
        out["@container"] = raw["@container"]
    if "@context" in raw:
        out["@context"] = raw["@context"]
    return out


@pytest.fixture
def offline() -> ContextResolver:
    return ContextResolver(fetch=False)


@pytest.fixture
def core(offline: ContextResolver) -> ActiveContext:
    return offline.resolve(None)


# -- the core context -------------------------------------------------------------------------
def test_core_constant_is_the_v1_9_document() -> None:
    assert core_document("1.9") == CORE_CONTEXT


def test_core_vocab_is_the_default_context() -> None:
    assert CORE_CONTEXT["@vocab"] == DEFAULT_VOCAB == f"{NGSI}default-context/"
    assert core_document("1.9")["@vocab"] == DEFAULT_VOCAB


def test_every_v1_9_term_expands_as_the_document_says(core: ActiveContext) -> None:
    doc = core_document("1.9")
    terms = [t for t in doc if not t.startswith("@")]
    assert len(terms) > 200
    for term in terms:
        expected = definition_of(doc, term)
        assert core.expand(term) == expected["@id"], term
        assert dict(core.term_definition(term) or {}) == expected, term
        assert core.compact(expected["@id"]) == term, term


@pytest.mark.parametrize("version", ["1.3", "1.4"])
def test_older_core_versions_agree_where_unchanged(core: ActiveContext, version: str) -> None:
    old, new = core_document(version), core_document("1.9")
    same = [t for t in old if not t.startswith("@") and old[t] == new.get(t)]
    assert len(same) > 100
    for term in same:
        assert core.expand(term) == reference_expand(old, term), term
    # the few definitions that later versions changed: the hub follows v1.9
    changed = {t for t in old if not t.startswith("@") and t not in same}
    assert changed <= {"attributeCount", "attributeDetails", "objects"}, changed
    assert core.expand("attributeCount") == f"{NGSI}attributeCount"


def test_core_urls_are_all_published_ones() -> None:
    assert set(CORE_CONTEXT_URLS) == {
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        *(
            f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.{n}.jsonld"
            for n in range(3, 10)
        ),
    }
    assert CORE_CONTEXT_URL in CORE_CONTEXT_URLS
    assert is_core_context_url("http://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld")
    assert not is_core_context_url("https://example.org/ngsi-ld-core-context.jsonld")


@pytest.mark.parametrize("url", CORE_CONTEXT_URLS)
def test_core_urls_resolve_offline(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(self: ContextResolver, url: str) -> Any:
        raise AssertionError(f"fetched {url}")

    monkeypatch.setattr(ContextResolver, "_download", no_network)
    for resolver in (ContextResolver(fetch=False), ContextResolver(fetch=True)):
        for value in (url, [url], [url, {}], url.replace("https://", "http://")):
            active = resolver.resolve(value)
            assert active.is_core_only, value
            assert active.source == value
            assert active.expand("observedAt") == f"{NGSI}observedAt"
            assert active.expand("temperature") == f"{DEFAULT_VOCAB}temperature"


def test_none_is_the_core(offline: ContextResolver, core: ActiveContext) -> None:
    assert core.is_core_only and core.source == CORE_CONTEXT_URL
    assert offline.resolve(None) is core
    assert core.vocab == DEFAULT_VOCAB


# -- expansion and compaction -----------------------------------------------------------------
CORE_TERMS = {
    "id": "@id",
    "type": "@type",
    "value": f"{NGSI}hasValue",
    "object": f"{NGSI}hasObject",
    "observedAt": f"{NGSI}observedAt",
    "location": f"{NGSI}location",
    "createdAt": f"{NGSI}createdAt",
    "unitCode": f"{NGSI}unitCode",
    "datasetId": f"{NGSI}datasetId",
    "languageMap": f"{NGSI}hasLanguageMap",
    "vocab": f"{NGSI}hasVocab",
    "json": f"{NGSI}hasJSON",
    "Property": f"{NGSI}Property",
    "Relationship": f"{NGSI}Relationship",
    "GeoProperty": f"{NGSI}GeoProperty",
    "Point": "https://purl.org/geojson/vocab#Point",
    "coordinates": "https://purl.org/geojson/vocab#coordinates",
    "description": "http://purl.org/dc/terms/description",
}


@pytest.mark.parametrize(("term", "iri"), CORE_TERMS.items())
def test_core_terms(core: ActiveContext, term: str, iri: str) -> None:
    assert core.expand(term) == iri
    assert core.compact(iri) == term


def test_names_no_context_defines_use_the_default_vocab(core: ActiveContext) -> None:
    for name in ("temperature", "AirQualityObserved", "pm2.5", "name", "x_y-z", "Ñandú"):
        assert core.expand(name) == DEFAULT_VOCAB + name
        assert core.compact(DEFAULT_VOCAB + name) == name


def test_absolute_and_compact_iris(core: ActiveContext) -> None:
    for iri in ("urn:ngsi-ld:Sensor:1", "https://example.org/a#b", "http://x.org/p", "_:b0"):
        assert core.expand(iri) == iri
        assert core.compact(iri) == iri
    assert core.expand("ngsi-ld:foo") == f"{NGSI}foo"
    assert core.compact(f"{NGSI}foo") == "ngsi-ld:foo"
    assert core.expand("geojson:bar") == "https://purl.org/geojson/vocab#bar"
    assert core.compact("https://purl.org/geojson/vocab#bar") == "geojson:bar"
    # a vocab suffix that is a term cannot be stripped: the compact IRI is used instead
    assert core.compact(f"{DEFAULT_VOCAB}location") == "ngsi-ld:default-context/location"
    assert core.expand("ngsi-ld:default-context/location") == f"{DEFAULT_VOCAB}location"
    assert core.expand("@context") == "@context"


USER = {
    "schema": "https://schema.org/",
    "name": "schema:name",  # uses a prefix defined in the same context
    "Bin": "https://example.org/waste#Bin",
    "fill": {"@id": "https://example.org/waste#fillingLevel", "@type": "@vocab"},
    "category": {"@id": "https://example.org/waste#category", "@type": "@vocab"},
    "raw": {"@id": "https://example.org/waste#raw", "@type": "@json"},
    "owner": {"@id": "https://example.org/waste#owner", "@type": "@id"},
    "tags": {"@id": "https://example.org/waste#tags", "@container": ["@list", "@set"]},
    "measuredAt": {"@id": "https://example.org/waste#measuredAt", "@type": "DateTime"},
    "ex": {"@id": "https://example.org/ex/", "@prefix": True},
    "notPrefix": {"@id": "https://example.org/np/"},
    "myProp": "ngsi-ld:myProp",  # uses the core's prefix
    "Glass": "https://example.org/waste#Glass",
}


@pytest.fixture
def user(offline: ContextResolver) -> ActiveContext:
    return offline.resolve(USER)


def test_user_terms(user: ActiveContext) -> None:
    assert not user.is_core_only and user.source == USER
    assert user.expand("name") == "https://schema.org/name"
    assert user.expand("Bin") == "https://example.org/waste#Bin"
    assert user.expand("schema:address") == "https://schema.org/address"
    assert user.compact("https://schema.org/address") == "schema:address"
    assert user.expand("ex:thing") == "https://example.org/ex/thing"
    assert user.expand("notPrefix:thing") == "notPrefix:thing"  # JSON-LD 1.1 prefix rule
    assert user.expand("myProp") == f"{NGSI}myProp"
    assert user.compact(f"{NGSI}myProp") == "myProp"
    assert user.expand("observedAt") == f"{NGSI}observedAt"
    assert user.expand("unknown") == f"{DEFAULT_VOCAB}unknown"
    assert user.ignored_terms == ()


def test_term_definitions(user: ActiveContext) -> None:
    assert user.term_definition("fill") == {
        "@id": "https://example.org/waste#fillingLevel",
        "@type": "@vocab",
    }
    assert user.term_definition("raw") == {"@id": "https://example.org/waste#raw", "@type": "@json"}
    assert user.term_definition("owner") == {
        "@id": "https://example.org/waste#owner",
        "@type": "@id",
    }
    assert user.term_definition("tags") == {
        "@id": "https://example.org/waste#tags",
        "@container": ["@list", "@set"],
    }
    assert user.term_definition("measuredAt") == {
        "@id": "https://example.org/waste#measuredAt",
        "@type": f"{NGSI}DateTime",
    }
    assert user.term_definition("Bin") == {"@id": "https://example.org/waste#Bin"}
    assert user.term_definition("vocab") == {"@id": f"{NGSI}hasVocab", "@type": "@vocab"}
    assert user.term_definition("unknown") is None
    definition = user.term_definition("fill")
    assert definition is not None
    with pytest.raises(TypeError):
        definition["@id"] = "x"  # type: ignore[index]


def test_vocab_values(user: ActiveContext) -> None:
    assert user.expand_vocab_value("Glass") == "https://example.org/waste#Glass"
    assert user.compact_vocab_value("https://example.org/waste#Glass") == "Glass"
    assert user.expand_vocab_value("Plastic") == f"{DEFAULT_VOCAB}Plastic"
    assert user.compact_vocab_value(f"{DEFAULT_VOCAB}Plastic") == "Plastic"


ROUND_TRIP = [
    *CORE_TERMS,
    *(t for t in USER if t not in ("ex", "notPrefix")),
    "temperature",
    "AirQualityObserved",
    "schema:address",
    "ex:thing",
    "ngsi-ld:foo",
    "geojson:Thing",
    "urn:ngsi-ld:Thing:1",
    "https://example.org/other#x",
    "a/b",
    "with space",
    "with.dot",
    "_:blank",
]


@pytest.mark.parametrize("term", ROUND_TRIP)
def test_round_trip(user: ActiveContext, term: str) -> None:
    assert user.compact(user.expand(term)) == term
    assert user.expand(user.compact(user.expand(term))) == user.expand(term)


def test_compaction_prefers_user_terms_then_shortest(offline: ContextResolver) -> None:
    active = offline.resolve(
        {
            "loc": "ngsi-ld:location",
            "bb": "https://example.org/x",
            "ab": "https://example.org/x",
            "abc": "https://example.org/x",
        }
    )
    assert active.compact(f"{NGSI}location") == "loc"
    assert active.expand("location") == f"{NGSI}location"
    assert active.compact("https://example.org/x") == "ab"


def test_core_terms_win_over_user_definitions(offline: ContextResolver) -> None:
    active = offline.resolve(
        [
            {
                "location": "https://schema.org/location",
                "name": "https://schema.org/name",
                "id": "@id",
                "observedAt": {"@id": f"{NGSI}observedAt", "@type": f"{NGSI}DateTime"},
                "ngsi-ld": "https://example.org/hijack/",
                "value": None,
            }
        ]
    )
    assert active.expand("location") == f"{NGSI}location"
    assert active.expand("name") == "https://schema.org/name"
    assert active.expand("value") == f"{NGSI}hasValue"
    assert active.expand("ngsi-ld:x") == f"{NGSI}x"
    # identical redefinitions (as in the Smart Data Models contexts) are not conflicts
    assert active.ignored_terms == ("location", "ngsi-ld", "value")


def test_user_vocab(offline: ContextResolver) -> None:
    active = offline.resolve({"@vocab": "https://example.org/v#"})
    assert active.vocab == "https://example.org/v#"
    assert active.expand("foo") == "https://example.org/v#foo"
    assert active.compact("https://example.org/v#foo") == "foo"
    assert active.expand("location") == f"{NGSI}location"
    compact_vocab = offline.resolve([{"ex": "https://example.org/"}, {"@vocab": "ex:terms/"}])
    assert compact_vocab.expand("foo") == "https://example.org/terms/foo"
    reset = offline.resolve([{"@vocab": "https://example.org/v#"}, {"@vocab": None}])
    assert reset.expand("foo") == f"{DEFAULT_VOCAB}foo"


def test_null_definitions(offline: ContextResolver) -> None:
    active = offline.resolve([{"foo": "https://example.org/foo"}, {"foo": None}])
    assert active.expand("foo") == f"{DEFAULT_VOCAB}foo"
    cleared = offline.resolve([{"foo": "https://example.org/foo"}, None, {"bar": "urn:x:bar"}])
    assert cleared.expand("foo") == f"{DEFAULT_VOCAB}foo"
    assert cleared.expand("bar") == "urn:x:bar"
    unmapped = offline.resolve([{"foo": "https://example.org/foo"}, {"foo": {"@id": None}}])
    assert unmapped.expand("foo") == f"{DEFAULT_VOCAB}foo"


def test_definitions_may_come_in_any_order(offline: ContextResolver) -> None:
    active = offline.resolve(
        {
            "alias": "other",
            "name": "s:name",
            "other": "s:other",
            "s": "https://schema.org/",
            "self": "self",
            "s:explicit": "https://example.org/explicit",
            "a:b": {},
        }
    )
    assert active.expand("name") == "https://schema.org/name"
    assert active.expand("alias") == "https://schema.org/other"
    assert active.expand("self") == f"{DEFAULT_VOCAB}self"
    assert active.expand("s:explicit") == "https://example.org/explicit"
    assert active.expand("a:b") == "a:b"


def test_keyword_aliases(offline: ContextResolver) -> None:
    active = offline.resolve({"identifier": "@id", "@comment": "ignored, like JSON-LD does"})
    assert active.expand("identifier") == "@id"
    assert active.compact("@id") == "id"  # the core's alias is shorter


INVALID: list[Any] = [
    42,
    True,
    [[{}]],
    [42],
    {"foo": 42},
    {"foo": ["https://example.org/foo"]},
    {"foo": {"@id": 42}},
    {"foo": {"@id": ["a"]}},
    {"foo": {"@reverse": 1}},
    {"foo": {"@id": "urn:x", "@reverse": "urn:y"}},
    {"foo": {"@id": "urn:x", "@type": 1}},
    {"foo": {"@id": "urn:x", "@type": "@list"}},
    {"foo": {"@id": "urn:x", "@container": "@bogus"}},
    {"foo": {"@id": "urn:x", "@container": 1}},
    {"foo": {"@id": "urn:x", "bogus": 1}},
    {"foo": {"@id": "urn:x", "@prefix": "yes"}},
    {"foo": {"@id": "urn:x", "@protected": "yes"}},
    {"foo": {"@id": "@context"}},
    {"": "urn:x"},
    {"@id": "urn:x"},
    {"a": "a:b"},
    {"a": "b:x", "b": "a:y"},
    {"@version": 1.0},
    {"@version": "1.1"},
    {"@vocab": 5},
    {"@vocab": "not an iri"},
    {"@import": 5},
    {"@language": 5},
    {"@protected": "yes"},
    "relative/context.jsonld",
    {"@import": "relative.jsonld"},
]


@pytest.mark.parametrize("context", INVALID, ids=lambda c: json.dumps(c)[:40])
def test_invalid_contexts(offline: ContextResolver, context: Any) -> None:
    with pytest.raises(BadRequest) as err:
        offline.resolve(context)
    assert err.value.status == 400
    assert err.value.type == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert err.value.detail.startswith("invalid @context: ")


def test_not_json_values_are_bad_requests(offline: ContextResolver) -> None:
    with pytest.raises(BadRequest):
        offline.resolve({"foo": {1, 2}})


def test_resolutions_are_cached(offline: ContextResolver, monkeypatch: pytest.MonkeyPatch) -> None:
    first = offline.resolve(USER)
    assert offline.resolve(json.loads(json.dumps(USER))) is first
    assert first.expand("temperature") == f"{DEFAULT_VOCAB}temperature"
    assert first.compact(f"{DEFAULT_VOCAB}temperature") == "temperature"

    def slow_path(*args: Any) -> str:
        raise AssertionError("not a dictionary look-up")

    monkeypatch.setattr(ldcontext._Tables, "expand_slow", slow_path)
    monkeypatch.setattr(ldcontext._Tables, "compact_slow", slow_path)
    again = offline.resolve(USER)
    for term in ("name", "Bin", "observedAt", "id", "temperature"):
        assert again.expand(term)
    assert again.compact("https://schema.org/name") == "name"
    assert again.compact(f"{DEFAULT_VOCAB}temperature") == "temperature"  # seen before
    with pytest.raises(AssertionError):
        again.expand("never-seen")


def test_a_compaction_is_remembered(offline: ContextResolver) -> None:
    active = offline.resolve(USER)
    iri = active.expand("schema:whatever")
    assert active.compact(iri) == "schema:whatever"
    assert active._compacted[iri] == "schema:whatever"


# -- Smart Data Models --------------------------------------------------------------------------
SDM_DOMAIN_URL = re.compile(
    r"https://(?:raw\.githubusercontent\.com/smart-data-models/(dataModel\.[A-Za-z]+)/"
    r"(?:refs/heads/)?master|smart-data-models\.github\.io/(dataModel\.[A-Za-z]+))"
    r"/context\.jsonld\Z"
)
#: @context URLs of the examples with no local copy: general contexts (no domain named),
#: a domain absent from shared/ (Aeronautics), an incubated model, and two compact IRIs
#: that are not URLs at all
SDM_WITHOUT_LOCAL_FILE = {
    "https://fiware.github.io/data-models/context.jsonld",
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Aeronautics/refs/heads/master/context.jsonld",
    "https://raw.githubusercontent.com/smart-data-models/incubated/SMARTWATER/SludgeQualityObserved/master/context.jsonld",
    "https://schema.lab.fiware.org/ld/context",
    "https://smart-data-models.github.io/data-models/context.jsonld",
    "https://smartdatamodels.org/context",
    "https://smartdatamodels.org/context.jsonld",
    "https://raw.githubusercontent.com/smart-data-models/data-models/master/context.jsonld",
    "iudx:EVChargingStation",
    "iudx:TransitManagement",
}


@dataclass
class SdmExamples:
    preload: dict[str, str] = field(default_factory=dict)
    unmapped: set[str] = field(default_factory=set)
    unreadable: list[Path] = field(default_factory=list)
    normalized: list[tuple[Path, list[dict[str, Any]]]] = field(default_factory=list)


def _contexts_of(item: Any) -> list[Any]:
    ctx = item.get("@context") if isinstance(item, dict) else None
    return [] if ctx is None else ctx if isinstance(ctx, list) else [ctx]


@pytest.fixture(scope="module")
def sdm() -> SdmExamples:
    if not SDM_DIR.exists():
        pytest.skip(f"{SDM_DIR} is absent (the shared data folder is needed)")
    out = SdmExamples()
    for path in sorted(SDM_DIR.glob("dataModel.*/*/examples/*.jsonld")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except ValueError:
            out.unreadable.append(path)
            continue
        items = doc if isinstance(doc, list) else [doc]
        for item in items:
            for ref in _contexts_of(item):
                if not isinstance(ref, str) or is_core_context_url(ref):
                    continue
                match = SDM_DOMAIN_URL.match(ref)
                local = (
                    SDM_DIR / (match.group(1) or match.group(2)) / "context.jsonld"
                    if match
                    else None
                )
                if local is not None and local.exists():
                    out.preload[ref] = str(local)
                else:
                    out.unmapped.add(ref)
        if path.name == "example-normalized.jsonld":
            out.normalized.append((path, [i for i in items if isinstance(i, dict)]))
    return out


def test_sdm_example_context_urls(sdm: SdmExamples) -> None:
    assert len(sdm.preload) >= 20
    assert sdm.unmapped <= SDM_WITHOUT_LOCAL_FILE, sdm.unmapped - SDM_WITHOUT_LOCAL_FILE
    assert [p.name for p in sdm.unreadable] in ([], ["example.jsonld"])


def test_sdm_domain_contexts_do_not_clash_with_the_core() -> None:
    if not SDM_DIR.exists():
        pytest.skip(f"{SDM_DIR} is absent (the shared data folder is needed)")
    paths = sorted(SDM_DIR.glob("dataModel.*/context.jsonld"))
    assert paths
    preload = {f"https://example.org/{p.parent.name}.jsonld": p for p in paths}
    resolver = ContextResolver(preload, fetch=False)
    for url, path in preload.items():
        terms = read_jsonld(path)["@context"]
        active = resolver.resolve(url)
        assert active.ignored_terms == (), (path, active.ignored_terms)
        for term, value in terms.items():
            iri = value if isinstance(value, str) else value["@id"]
            assert active.expand(term) == iri, (path, term)
            assert active.compact(iri) == term, (path, term)


def test_sdm_examples_expand_and_compact(sdm: SdmExamples) -> None:
    resolver = ContextResolver(sdm.preload, fetch=False)
    checked = 0
    for path, items in sdm.normalized:
        for item in items:
            refs = _contexts_of(item)
            if any(isinstance(r, str) and r in sdm.unmapped for r in refs):
                continue
            active = resolver.resolve(item.get("@context"))
            domain: dict[str, Any] = {}
            for ref in refs:
                if isinstance(ref, str) and ref in sdm.preload:
                    domain.update(read_jsonld(Path(sdm.preload[ref]))["@context"])
            types = item["type"] if isinstance(item["type"], list) else [item["type"]]
            for name in [*types, *(k for k in item if k not in ("id", "type", "@context"))]:
                iri = active.expand(name)
                assert active.compact(iri) == name, (path, name)
                if name in domain and isinstance(domain[name], str):
                    assert iri == domain[name], (path, name)
            checked += 1
    assert checked >= 50


def test_sdm_url_forms_resolve_to_the_same_terms(sdm: SdmExamples) -> None:
    resolver = ContextResolver(sdm.preload, fetch=False)
    raw = "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld"
    pages = "https://smart-data-models.github.io/dataModel.Environment/context.jsonld"
    if raw not in sdm.preload or pages not in sdm.preload:
        pytest.skip("the Environment examples no longer use both URL forms")
    a, b = resolver.resolve(raw), resolver.resolve([pages, CORE_CONTEXT_URLS[0]])
    for name in ("AirQualityObserved", "pm25", "NO2", "airQualityIndex", "location"):
        assert a.expand(name) == b.expand(name)
    assert a.expand("AirQualityObserved") == (
        "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved"
    )


# -- preloading ----------------------------------------------------------------------------------
def test_preload_from_files_and_text(tmp_path: Path) -> None:
    ctx_file = tmp_path / "ctx.jsonld"
    ctx_file.write_text(json.dumps({"@context": {"Bin": "https://example.org/Bin"}}))
    resolver = ContextResolver(
        {
            "https://example.org/a.jsonld": ctx_file,
            "https://example.org/b.jsonld": str(ctx_file),
            "https://example.org/c.jsonld": '{"@context": ["https://example.org/a.jsonld"]}',
            CORE_CONTEXT_URLS[0]: "/nonexistent/ignored.jsonld",
        },
        fetch=False,
    )
    for url in ("a", "b", "c"):
        assert resolver.resolve(f"https://example.org/{url}.jsonld").expand("Bin") == (
            "https://example.org/Bin"
        )
    kinds = {i["url"]: i["kind"] for i in resolver.cached()}
    assert kinds["https://example.org/a.jsonld"] == "Preloaded"
    assert kinds[CORE_CONTEXT_URLS[0]] == "Core"


def test_bad_preloads_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonld"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as err:
        ContextResolver(
            {
                "https://example.org/missing": tmp_path / "missing.jsonld",
                "https://example.org/bad": bad,
                "https://example.org/shape": '{"no": "context"}',
            }
        )
    lines = str(err.value).splitlines()
    assert len(lines) == 3 and all(line.startswith("context preload https://") for line in lines)


def test_unknown_url_without_fetching(offline: ContextResolver) -> None:
    with pytest.raises(LdContextNotAvailable) as err:
        offline.resolve("https://example.org/unknown.jsonld")
    assert err.value.status == 503
    assert err.value.type == "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable"
    assert err.value.title == "LD context not available"
    assert ldcontext.LdContextNotAvailable is LdContextNotAvailable


# -- fetching -----------------------------------------------------------------------------------
@dataclass
class Served:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0  # seconds the handler waits before answering (simulates slowness)
    headers: dict[str, str] = field(default_factory=dict)


class ContextServer:
    """A tiny HTTP server on 127.0.0.1 that serves context documents and counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Served] = {}
        self.hits: dict[str, int] = {}
        self.release = threading.Event()  # ends every pending delay at teardown
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                served = outer.routes.get(self.path, Served(404, b"not found"))
                if served.delay:
                    outer.release.wait(served.delay)
                try:
                    self.send_response(served.status)
                    for k, v in served.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(served.body)))
                    self.end_headers()
                    self.wfile.write(served.body)
                except OSError:
                    pass  # the client gave up

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def add(self, path: str, body: Any = None, **kw: Any) -> str:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.routes[path] = Served(body=raw, **kw)
        return self.base + path

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[ContextServer]:
    srv = ContextServer()
    yield srv
    srv.close()


TERMS = {
    "@context": {"Bin": "https://example.org/waste#Bin", "fill": "https://example.org/waste#fill"}
}


def test_fetched_once_and_cached(server: ContextServer) -> None:
    url = server.add("/ctx.jsonld", TERMS)
    resolver = ContextResolver(timeout=5)
    active = resolver.resolve(url)
    assert active.expand("Bin") == "https://example.org/waste#Bin"
    assert resolver.resolve(url) is active
    other = resolver.resolve([url, {"x": "urn:x"}, CORE_CONTEXT_URLS[0]])
    assert other.expand("fill") == "https://example.org/waste#fill" and other.expand("x") == "urn:x"
    assert server.hits == {"/ctx.jsonld": 1}
    info = {i["url"]: i for i in resolver.cached()}[url]
    assert info["kind"] == "Cached" and info["numberOfHits"] == 3
    assert info["localId"].startswith(HOSTED_PREFIX)
    assert info["createdAt"].endswith("Z") and info["lastUsage"].endswith("Z")
    assert resolver.get_hosted(url) == TERMS
    assert resolver.get_hosted(info["localId"]) == TERMS


def test_relative_nested_and_imported_contexts(server: ContextServer) -> None:
    server.add("/base/terms.jsonld", {"@context": {"Bin": "https://example.org/Bin"}})
    server.add("/base/more.jsonld", {"@context": {"fill": "https://example.org/fill"}})
    url = server.add(
        "/base/main.jsonld",
        {"@context": ["terms.jsonld", {"@import": "/base/more.jsonld", "x": "urn:x"}]},
    )
    active = ContextResolver().resolve(url)
    assert active.expand("Bin") == "https://example.org/Bin"
    assert active.expand("fill") == "https://example.org/fill"
    assert active.expand("x") == "urn:x"
    assert set(active.urls) == {
        url,
        f"{server.base}/base/terms.jsonld",
        f"{server.base}/base/more.jsonld",
    }


def test_cycles_are_bad_requests(server: ContextServer) -> None:
    server.add("/a.jsonld", {"@context": ["b.jsonld", {"a": "urn:a"}]})
    server.add("/b.jsonld", {"@context": ["c.jsonld"]})
    server.add("/c.jsonld", {"@context": ["a.jsonld"]})
    server.add("/self.jsonld", {"@context": {"@import": "self.jsonld"}})
    resolver = ContextResolver()
    with pytest.raises(BadRequest, match=r"include each other: .*a\.jsonld -> .*b\.jsonld"):
        resolver.resolve(f"{server.base}/a.jsonld")
    with pytest.raises(BadRequest, match="include each other"):
        resolver.resolve(f"{server.base}/self.jsonld")
    # the same context twice, not nested, is fine
    ok = server.add("/ok.jsonld", {"@context": {"ok": "urn:ok"}})
    both = server.add("/both.jsonld", {"@context": ["ok.jsonld", {"@import": "ok.jsonld"}]})
    assert resolver.resolve([ok, both, ok]).expand("ok") == "urn:ok"


def test_nesting_depth_is_limited(server: ContextServer) -> None:
    depth = ldcontext.MAX_NESTING + 2
    for i in range(depth):
        server.add(f"/n{i}.jsonld", {"@context": [f"n{i + 1}.jsonld"]})
    server.add(f"/n{depth}.jsonld", {"@context": {}})
    with pytest.raises(BadRequest, match="nested deeper"):
        ContextResolver().resolve(f"{server.base}/n0.jsonld")


@pytest.mark.parametrize(
    ("body", "status", "error", "message"),
    [
        (b"{not json", 200, BadRequest, "is not valid JSON"),
        (b'{"terms": {}}', 200, BadRequest, "with an @context member"),
        (b"[1, 2]", 200, BadRequest, "with an @context member"),
        (b'{"@context": {"a": 5}}', 200, BadRequest, "must be a string"),
        (b"gone", 404, LdContextNotAvailable, "HTTP 404"),
        (b"oops", 500, LdContextNotAvailable, "HTTP 500"),
    ],
)
def test_remote_failures(
    server: ContextServer, body: bytes, status: int, error: type[Exception], message: str
) -> None:
    url = server.add("/bad.jsonld", body, status=status)
    resolver = ContextResolver(timeout=5)
    for _ in range(2):
        with pytest.raises(error, match=message):
            resolver.resolve(url)
        with pytest.raises(error, match=message):
            resolver.resolve([{"x": "urn:x"}, url])
    assert server.hits["/bad.jsonld"] == 1  # failures are remembered for a while


def test_failures_are_retried_after_failure_ttl(server: ContextServer) -> None:
    url = server.add("/flaky.jsonld", b"oops", status=503)
    resolver = ContextResolver(failure_ttl=0)
    for _ in range(2):
        with pytest.raises(LdContextNotAvailable):
            resolver.resolve(url)
    assert server.hits["/flaky.jsonld"] == 2
    server.add("/flaky.jsonld", TERMS)
    assert resolver.resolve(url).expand("Bin") == "https://example.org/waste#Bin"


def test_slow_server_times_out(server: ContextServer) -> None:
    url = server.add("/slow.jsonld", TERMS, delay=30)
    resolver = ContextResolver(timeout=0.5)
    start = time.monotonic()
    with pytest.raises(LdContextNotAvailable, match=r"within 0\.5 s"):
        resolver.resolve(url)
    assert time.monotonic() - start < 2.0


def test_too_large_documents(server: ContextServer) -> None:
    big = {"@context": {f"t{i}": f"https://example.org/{i}" for i in range(2000)}}
    url = server.add("/big.jsonld", big)
    with pytest.raises(LdContextNotAvailable, match="larger than 1000 bytes"):
        ContextResolver(max_bytes=1000).resolve(url)
    assert ContextResolver().resolve(url).expand("t5") == "https://example.org/5"


def test_redirects_are_followed(server: ContextServer) -> None:
    server.add("/real.jsonld", TERMS)
    url = server.add("/moved.jsonld", b"", status=302, headers={"Location": "/real.jsonld"})
    assert ContextResolver().resolve(url).expand("Bin") == "https://example.org/waste#Bin"
    for n, target in enumerate(["ftp://127.0.0.1/x.jsonld", "file:///etc/passwd"]):
        away = server.add(f"/away{n}.jsonld", b"", status=302, headers={"Location": target})
        with pytest.raises(LdContextNotAvailable, match=r"non-HTTP|not allowed"):
            ContextResolver().resolve(away)


@pytest.mark.parametrize(
    "url", ["ftp://example.org/c.jsonld", "urn:example:context", "file:///etc/hosts"]
)
def test_only_http_is_fetched(url: str) -> None:
    with pytest.raises(LdContextNotAvailable, match="only http"):
        ContextResolver().resolve(url)


def test_unreachable_host() -> None:
    srv = ContextServer()
    url = f"{srv.base}/gone.jsonld"
    srv.close()
    with pytest.raises(LdContextNotAvailable, match="could not be fetched"):
        ContextResolver(timeout=2).resolve(url)


def test_fetching_disabled_never_connects(server: ContextServer) -> None:
    url = server.add("/ctx.jsonld", TERMS)
    with pytest.raises(LdContextNotAvailable, match="fetching remote contexts is disabled"):
        ContextResolver(fetch=False).resolve(url)
    assert server.hits == {}


def test_documents_are_evicted_lru(server: ContextServer) -> None:
    urls = [server.add(f"/c{i}.jsonld", {"@context": {f"t{i}": f"urn:t:{i}"}}) for i in range(3)]
    resolver = ContextResolver(cache_size=2)
    for url in [*urls, urls[0]]:
        resolver.resolve(url)
    assert server.hits == {"/c0.jsonld": 2, "/c1.jsonld": 1, "/c2.jsonld": 1}
    cached = [i["url"] for i in resolver.cached() if i["kind"] == "Cached"]
    assert sorted(cached) == sorted([urls[0], urls[2]])


def test_threads_share_one_fetch(server: ContextServer) -> None:
    url = server.add("/shared.jsonld", TERMS, delay=0.3)
    resolver = ContextResolver(timeout=5)
    barrier = threading.Barrier(8)
    results: list[ActiveContext | BaseException] = []
    lock = threading.Lock()

    def work(value: Any) -> None:
        barrier.wait()
        try:
            got: ActiveContext | BaseException = resolver.resolve(value)
        except BaseException as exc:
            got = exc
        with lock:
            results.append(got)

    values = [url, [url], [url, {"a": "urn:a"}], url] * 2
    threads = [threading.Thread(target=work, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8
    assert all(isinstance(r, ActiveContext) for r in results), results
    assert {r.expand("Bin") for r in results if isinstance(r, ActiveContext)} == {
        "https://example.org/waste#Bin"
    }
    assert server.hits == {"/shared.jsonld": 1}


def test_waiters_see_the_failure_too(server: ContextServer) -> None:
    url = server.add("/slow.jsonld", TERMS, delay=30)
    resolver = ContextResolver(timeout=0.5)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        try:
            resolver.resolve(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert time.monotonic() - start < 3.0
    assert len(errors) == 4 and all(isinstance(e, LdContextNotAvailable) for e in errors)
    assert server.hits == {"/slow.jsonld": 1}


# -- hosted contexts ----------------------------------------------------------------------------
def test_hosted_contexts() -> None:
    calls: list[tuple[str, Any]] = []
    resolver = ContextResolver(fetch=False, store_hook=lambda i, d: calls.append((i, d)))
    doc = {"@context": {"Bin": "https://example.org/waste#Bin"}}
    ident = resolver.add_hosted(doc)
    assert ident.startswith(HOSTED_PREFIX)
    assert calls == [(ident, doc)]
    assert resolver.get_hosted(ident) == doc
    doc["@context"]["Bin"] = "changed"  # the resolver kept its own copy
    assert resolver.get_hosted(ident)["@context"]["Bin"] == "https://example.org/waste#Bin"
    for ref in (
        ident,
        f"http://localhost:8080/ngsi-ld/v1/jsonldContexts/{quote(ident)}",
        f"https://hub.example.org/ngsi-ld/v1/jsonldContexts/{ident}",
        [ident, {"x": "urn:x"}],
    ):
        active = resolver.resolve(ref)
        assert active.expand("Bin") == "https://example.org/waste#Bin"
    info = {i["url"]: i for i in resolver.cached()}[ident]
    assert info["kind"] == "Hosted" and info["localId"] == ident and info["numberOfHits"] == 4
    resolver.delete(f"http://localhost:8080/ngsi-ld/v1/jsonldContexts/{quote(ident)}")
    assert calls[-1] == (ident, None)
    with pytest.raises(NotFound):
        resolver.get_hosted(ident)
    with pytest.raises(NotFound):
        resolver.delete(ident)
    with pytest.raises(LdContextNotAvailable):
        resolver.resolve(ident)
    assert ident not in {i["url"] for i in resolver.cached()}


def test_hosted_contexts_are_checked(offline: ContextResolver) -> None:
    for bad in ({"no": "context"}, {"@context": {"a": 5}}, [1]):
        with pytest.raises(BadRequest):
            offline.add_hosted(bad)  # type: ignore[arg-type]
    with pytest.raises(LdContextNotAvailable):
        offline.add_hosted({"@context": "https://example.org/unknown.jsonld"})
    assert not [i for i in offline.cached() if i["kind"] == "Hosted"]


def test_a_failing_store_hook_leaves_nothing() -> None:
    def fail(ident: str, doc: Any) -> None:
        raise RuntimeError("store down")

    resolver = ContextResolver(fetch=False, store_hook=fail)
    with pytest.raises(RuntimeError):
        resolver.add_hosted({"@context": {}})
    assert not [i for i in resolver.cached() if i["kind"] == "Hosted"]


def test_restore_hosted() -> None:
    ident = f"{HOSTED_PREFIX}0b5e0f0e-0000-4000-8000-000000000001"
    resolver = ContextResolver(fetch=False)
    resolver.restore_hosted({ident: {"@context": {"Bin": "urn:bin"}}})
    assert resolver.resolve(ident).expand("Bin") == "urn:bin"
    with pytest.raises(ValueError, match="not a hosted context id"):
        resolver.restore_hosted({"urn:other": {"@context": {}}})


def test_core_and_preloaded_cannot_be_deleted(server: ContextServer) -> None:
    resolver = ContextResolver({"https://example.org/p": json.dumps(TERMS)})
    for ref in (CORE_CONTEXT_URLS[0], "https://example.org/p"):
        with pytest.raises(BadRequest, match="cannot be deleted"):
            resolver.delete(ref)
    assert resolver.get_hosted(CORE_CONTEXT_URL) == {"@context": CORE_CONTEXT}
    url = server.add("/ctx.jsonld", TERMS)
    resolver.resolve(url)
    resolver.delete(url)  # a fetched context is dropped, and fetched again when used
    resolver.resolve(url)
    assert server.hits == {"/ctx.jsonld": 2}
    with pytest.raises(NotFound):
        resolver.delete("https://example.org/never-seen")


# -- Link headers -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        '<https://ex.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; '
        'type="application/ld+json"',
        "<https://ex.org/ctx.jsonld>;rel=http://www.w3.org/ns/json-ld#context",
        '<https://ex.org/next>; rel="next", <https://ex.org/ctx.jsonld>; '
        'REL="alternate http://www.w3.org/ns/json-ld#context"',
        '  <https://ex.org/ctx.jsonld> ; type="application/ld+json" ; '
        'rel="http://www.w3.org/ns/json-ld#context" ',
    ],
)
def test_link_header_context(value: str) -> None:
    assert link_header_context(value) == "https://ex.org/ctx.jsonld"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "https://ex.org/ctx.jsonld",
        '<https://ex.org/ctx.jsonld>; rel="next"',
        "<https://ex.org/ctx.jsonld>",
        '<https://ex.org/ctx.jsonld; rel="http://www.w3.org/ns/json-ld#context"',
        '<https://ex.org/ctx.jsonld> rel="http://www.w3.org/ns/json-ld#context"',
        '<>; rel="http://www.w3.org/ns/json-ld#context"',
        '<https://a.org/1>; rel="http://www.w3.org/ns/json-ld#context", '
        '<https://a.org/2>; rel="http://www.w3.org/ns/json-ld#context"',
        '<https://ex.org/ctx.jsonld>; ="x"',
    ],
)
def test_bad_link_headers(value: str) -> None:
    with pytest.raises(BadRequest):
        link_header_context(value)


def test_link_header_round_trip() -> None:
    header = link_header(CORE_CONTEXT_URL)
    assert header == (
        f'<{CORE_CONTEXT_URL}>; rel="{JSONLD_CONTEXT_REL}"; type="application/ld+json"'
    )
    assert link_header_context(header) == CORE_CONTEXT_URL


def test_resolver_arguments_are_checked() -> None:
    bad: list[Callable[[], Any]] = [
        lambda: ContextResolver(timeout=0),
        lambda: ContextResolver(max_bytes=0),
        lambda: ContextResolver(cache_size=0),
    ]
    for make in bad:
        with pytest.raises(ValueError):
            make()
