"""JSON-LD @context resolution for the hub: short names <-> IRIs, offline first.

NGSI-LD payloads name entity types and attributes with terms (``temperature``,
``AirQualityObserved``) that a JSON-LD ``@context`` maps to IRIs.  The hub stores IRIs
and answers with names compacted with the caller's context.  This module does the part
of JSON-LD 1.1 context processing that NGSI-LD needs, without a JSON-LD library:

* :class:`ContextResolver` turns a ``@context`` value (``None``, a URL, an inline object
  or a list of them) into an :class:`ActiveContext`.  URLs are found, in this order,
  among the built-in core context URLs, the hosted contexts (``/jsonldContexts``), the
  *preloaded* ones (URL -> local file, so e.g. the Smart Data Models contexts resolve
  offline) and the contexts fetched before; otherwise, when fetching is enabled, the
  URL is fetched once over HTTP(S), within ``timeout`` seconds overall, and kept in an
  LRU cache.  A resolved context is cached by its value: resolving the same context
  again is a dictionary look-up.
* :class:`ActiveContext` expands and compacts terms.  Every term defined by the
  context is in a dictionary from the start, and every other name is added to it the
  first time it is seen, so ``expand`` of a known name is one dictionary look-up.

Decisions (ETSI GS CIM 009 V1.8/V1.9 and what the common brokers do):

* **The core context has the final say.**  Clause C.9 of the specification says the
  core @context is protected and "always to be processed as the last one", so a user
  context cannot change a core term (Orion-LD and Stellio behave the same way).  The
  hub applies the core first, so that user contexts may use its prefixes (``ngsi-ld:``)
  and its ``@vocab``, then the user's contexts in order, and then keeps the core's
  definition of every core term: a user definition of a core term that differs from
  the core's is ignored (not an error; listed in :attr:`ActiveContext.ignored_terms`),
  an identical one (Smart Data Models contexts redefine ``id``, ``type``,
  ``location``... identically) is accepted.  Terms that do not clash are the user's.
* A user ``@vocab`` is honoured (terms no context defines expand with it);
  ``"@vocab": null`` restores the NGSI-LD default
  ``https://uri.etsi.org/ngsi-ld/default-context/``.
* A term defined as ``null`` (or with ``"@id": null``) loses its earlier user
  definition and falls back to ``@vocab``, instead of being dropped as JSON-LD would:
  a broker must not lose attributes silently.  A ``null`` entry in a context list
  clears the user contexts before it (the core stays).
* Every published core context URL (v1.3 ... v1.9, and the unversioned one) stands for
  the built-in :data:`~sencity.hub.core_context.CORE_CONTEXT` (v1.9); they are never
  fetched.
* Errors: a context that is not valid (wrong JSON shape, a bad term definition, an
  ``@id`` that is not a string, a cycle of remote contexts, a remote document that is
  not JSON or has no ``@context``) raises :class:`~sencity.errors.BadRequest`
  (400 BadRequestData, as the specification says for an invalid @context); a remote
  context that cannot be retrieved (not preloaded while fetching is off, a network
  error, an HTTP error status, too large, too slow) raises
  :class:`~sencity.errors.LdContextNotAvailable` (503).  Failures are remembered for
  ``failure_ttl`` seconds so that a broken URL does not cost a timeout per request.
* Compaction follows JSON-LD's order: a term (user terms first, except that ``id``
  and ``type`` stay the names of ``@id`` and ``@type``; then the shortest, then the
  lexicographically first), then the ``@vocab`` suffix, then a compact IRI
  with a prefix term, then the IRI itself; a candidate is only used when it expands
  back to the same IRI, so ``expand(compact(iri)) == iri`` always holds.
* Compact IRIs use JSON-LD 1.1 prefixes: terms whose IRI ends with one of
  ``:/?#[]@`` (or with ``"@prefix": true``).  Scoped contexts (a term definition's
  ``@context``) are kept in the definition but not applied: NGSI-LD names are expanded
  at the entity and attribute levels only.  ``@base``, ``@language``, ``@direction``,
  ``@propagate`` and ``@protected`` of user contexts are checked and otherwise ignored.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote, urljoin, urlsplit

from sencity.errors import (
    BadRequest,
    ConfigError,
    LdContextNotAvailable,
    NotFound,
    SenCityError,
)
from sencity.hub.core_context import (
    CORE_CONTEXT,
    CORE_CONTEXT_URL,
    CORE_CONTEXT_URLS,
    DEFAULT_VOCAB,
    is_core_context_url,
)

__all__ = [
    "HOSTED_PREFIX",
    "JSONLD_CONTEXT_REL",
    "ActiveContext",
    "ContextResolver",
    "LdContextNotAvailable",
    "link_header",
    "link_header_context",
]

#: the ``rel`` of a ``Link`` header that carries a JSON-LD context
JSONLD_CONTEXT_REL: Final = "http://www.w3.org/ns/json-ld#context"
#: identifiers of hosted contexts start with this
HOSTED_PREFIX: Final = "urn:ngsi-ld:jsonldContext:"
#: remote contexts may include remote contexts this deep
MAX_NESTING: Final = 10
#: at most this many remote contexts in one resolution
MAX_REMOTE: Final = 64
#: an active context remembers at most this many expansions/compactions of unknown names
MAX_NAME_CACHE: Final = 100_000

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_KEYWORD_FORM = re.compile(r"@[A-Za-z]+\Z")
_GEN_DELIMS = frozenset(":/?#[]@")
_KEYWORDS = frozenset(
    {
        "@base",
        "@container",
        "@context",
        "@direction",
        "@graph",
        "@id",
        "@import",
        "@included",
        "@index",
        "@json",
        "@language",
        "@list",
        "@nest",
        "@none",
        "@prefix",
        "@propagate",
        "@protected",
        "@reverse",
        "@set",
        "@type",
        "@value",
        "@version",
        "@vocab",
    }
)
_CONTEXT_KEYS = frozenset(
    {"@base", "@direction", "@import", "@language", "@propagate", "@protected", "@version"}
)
_DEFINITION_KEYS = frozenset(
    {
        "@id",
        "@reverse",
        "@type",
        "@container",
        "@context",
        "@language",
        "@direction",
        "@index",
        "@nest",
        "@prefix",
        "@protected",
    }
)
_EXTRA_KEYS = ("@context", "@language", "@direction", "@index", "@nest")
_CONTAINERS = frozenset({"@list", "@set", "@index", "@language", "@id", "@graph", "@type"})
_TYPE_KEYWORDS = frozenset({"@id", "@vocab", "@json", "@none"})
_ACCEPT = "application/ld+json, application/json;q=0.9, */*;q=0.1"


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _invalid(detail: str) -> BadRequest:
    return BadRequest(f"invalid @context: {detail}")


def _is_iri(value: str) -> bool:
    return value.startswith("_:") or _SCHEME.match(value) is not None


def _now() -> float:
    return time.time()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


# -- term definitions and processed contexts --------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class _Term:
    """One term definition, its IRIs expanded."""

    iri: str
    reverse: bool = False
    type: str | None = None
    container: tuple[str, ...] = ()
    prefix: bool = False
    extra: tuple[tuple[str, Any], ...] = ()

    def same_as(self, other: _Term) -> bool:
        """Equal as JSON-LD compares definitions (``@protected`` and prefix flags aside)."""
        return (
            self.iri == other.iri
            and self.reverse == other.reverse
            and self.type == other.type
            and sorted(self.container) == sorted(other.container)
            and json.dumps(self.extra, sort_keys=True) == json.dumps(other.extra, sort_keys=True)
        )

    def public(self) -> Mapping[str, Any]:
        out: dict[str, Any] = {"@reverse" if self.reverse else "@id": self.iri}
        if self.type is not None:
            out["@type"] = self.type
        if self.container:
            out["@container"] = (
                self.container[0] if len(self.container) == 1 else list(self.container)
            )
        out.update(self.extra)
        return MappingProxyType(out)


class _Tables:
    """A processed context: immutable term tables plus the name caches built on them."""

    __slots__ = (
        "_definitions",
        "compacted",
        "expanded",
        "inverse",
        "prefixes",
        "terms",
        "user_terms",
        "vocab",
    )

    def __init__(self, terms: dict[str, _Term], vocab: str, user_terms: frozenset[str]) -> None:
        self.terms = terms
        self.vocab = vocab
        self.user_terms = user_terms
        #: name -> IRI: every term from the start, other names once they are seen
        self.expanded: dict[str, str] = {t: d.iri for t, d in terms.items()}
        # user terms first (the core's aliases of keywords, ``id`` and ``type``, stay first)
        ranked = sorted(
            (t for t, d in terms.items() if not d.reverse),
            key=lambda t: ((t in user_terms) == (terms[t].iri in _KEYWORDS), len(t), t),
        )
        self.inverse: dict[str, str] = {}
        for t in ranked:
            self.inverse.setdefault(terms[t].iri, t)
        #: IRI -> name: the terms' IRIs from the start, other IRIs once they are seen
        self.compacted: dict[str, str] = dict(self.inverse)
        self.prefixes: list[tuple[str, str]] = sorted(
            ((t, d.iri) for t, d in terms.items() if d.prefix and not d.reverse),
            key=lambda p: (len(p[0]), p[0]),
        )
        self._definitions: dict[str, Mapping[str, Any]] = {}

    def expand_slow(self, name: str) -> str:
        iri = self._expand(name)
        if len(self.expanded) < MAX_NAME_CACHE:
            self.expanded[name] = iri
        return iri

    def _expand(self, name: str) -> str:
        known = self.expanded.get(name)
        if known is not None:
            return known
        if not name or name[0] == "@":
            return name
        colon = name.find(":")
        if colon > 0:
            prefix, suffix = name[:colon], name[colon + 1 :]
            if prefix == "_" or suffix.startswith("//"):
                return name
            definition = self.terms.get(prefix)
            if definition is not None and definition.prefix:
                return definition.iri + suffix
            if _SCHEME.match(name):
                return name
        return self.vocab + name

    def compact_slow(self, iri: str) -> str:
        name = self._compact(iri)
        if len(self.compacted) < MAX_NAME_CACHE:
            self.compacted[iri] = name
        return name

    def _compact(self, iri: str) -> str:
        term = self.inverse.get(iri)
        if term is not None:
            return term
        if not iri or iri[0] == "@":
            return iri
        vocab = self.vocab
        if len(iri) > len(vocab) and iri.startswith(vocab):
            suffix = iri[len(vocab) :]
            if suffix not in self.terms and self._expand(suffix) == iri:
                return suffix
        best: str | None = None
        for term, prefix_iri in self.prefixes:
            if len(iri) > len(prefix_iri) and iri.startswith(prefix_iri):
                candidate = f"{term}:{iri[len(prefix_iri) :]}"
                if (
                    (best is None or (len(candidate), candidate) < (len(best), best))
                    and candidate not in self.terms
                    and self._expand(candidate) == iri
                ):
                    best = candidate
        return best if best is not None else iri

    def definition(self, term: str) -> Mapping[str, Any] | None:
        found = self._definitions.get(term)
        if found is None:
            definition = self.terms.get(term)
            if definition is None:
                return None
            found = self._definitions[term] = definition.public()
        return found


class ActiveContext:
    """A resolved @context: expands names to IRIs and compacts IRIs to names.

    Instances are immutable and shared between threads; their name caches only grow
    (up to :data:`MAX_NAME_CACHE` entries each).
    """

    __slots__ = ("_compacted", "_core_only", "_expanded", "_source", "_t", "ignored_terms", "urls")

    def __init__(
        self,
        source: Any,
        tables: _Tables,
        *,
        core_only: bool,
        urls: tuple[str, ...] = (),
        ignored_terms: tuple[str, ...] = (),
    ) -> None:
        self._source = source
        self._t = tables
        self._expanded = tables.expanded
        self._compacted = tables.compacted
        self._core_only = core_only
        #: the remote contexts (URLs, hosted ids) this context was built from
        self.urls = urls
        #: user definitions of core terms that were ignored because they differ from the core
        self.ignored_terms = ignored_terms

    def expand(self, term: str) -> str:
        """The IRI of an attribute or entity type name (JSON-LD vocabulary expansion).

        A defined term gives its IRI (``id``/``type`` give ``@id``/``@type``); a compact
        IRI ``prefix:suffix`` whose prefix is a prefix term gives the prefix's IRI +
        suffix; an absolute IRI (``urn:…``, ``https://…``) and a keyword are returned
        unchanged; anything else is appended to ``@vocab``.
        """
        try:
            return self._expanded[term]
        except KeyError:
            return self._t.expand_slow(term)

    def compact(self, iri: str) -> str:
        """The name of an IRI in this context; ``expand(compact(iri)) == iri``."""
        try:
            return self._compacted[iri]
        except KeyError:
            return self._t.compact_slow(iri)

    def expand_vocab_value(self, value: str) -> str:
        """Expands a value of a term typed ``@vocab`` (a VocabProperty's ``vocab``)."""
        return self.expand(value)

    def compact_vocab_value(self, value: str) -> str:
        """Compacts a value of a term typed ``@vocab``."""
        return self.compact(value)

    def term_definition(self, term: str) -> Mapping[str, Any] | None:
        """The definition of a term, IRIs expanded, or None when the term is not defined.

        ``{"@id": iri}`` plus, when the context says so, ``@type`` (``@id``, ``@vocab``,
        ``@json``, ``@none`` or an IRI), ``@container`` (a string, or a list of them) and
        ``@context``/``@language``/``@direction``/``@index``/``@nest`` as given.  A
        reverse property has ``@reverse`` instead of ``@id``.  Read-only.
        """
        return self._t.definition(term)

    @property
    def source(self) -> Any:
        """The context value as the caller gave it, for echoing in responses."""
        return self._source

    @property
    def is_core_only(self) -> bool:
        """True when the context is nothing but the core context (no user terms/URLs)."""
        return self._core_only

    @property
    def vocab(self) -> str:
        """The vocabulary mapping (``@vocab``) in force."""
        return self._t.vocab

    def __repr__(self) -> str:
        return f"ActiveContext({self._source!r})"


# -- context processing -----------------------------------------------------------------------
class _Builder:
    """Processes context values into term tables (one resolution; not shared)."""

    def __init__(
        self,
        load: Callable[[str], Any],
        base: _Tables | None,
    ) -> None:
        self._load = load
        self.protected: dict[str, _Term] = dict(base.terms) if base else {}
        self.user = base is not None
        self.terms: dict[str, _Term] = dict(self.protected)
        self.vocab: str | None = base.vocab if base else None
        self.user_terms: set[str] = set()
        self.ignored: list[str] = []
        self.urls: list[str] = []
        self.touched = False
        self._remote = 0

    # context values
    def process(self, value: Any, base: str | None, stack: tuple[str, ...]) -> None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None:
                self._reset()
            elif isinstance(item, str):
                self._include(item, base, stack)
            elif isinstance(item, dict):
                self._local(item, base, stack)
            else:
                where = f" (in {stack[-1]})" if stack else ""
                raise _invalid(
                    f"an entry must be a URL, an object or null, not {_kind(item)}{where}"
                )

    def _reset(self) -> None:
        self.terms = dict(self.protected)
        self.vocab = DEFAULT_VOCAB if self.user else None
        self.user_terms.clear()

    def _absolute(self, ref: str, base: str | None) -> str:
        if _SCHEME.match(ref):
            return ref
        if base is not None:
            return urljoin(base, ref)
        raise _invalid(f"{ref!r} is not an absolute URL")

    def _fetch(self, ref: str, base: str | None, stack: tuple[str, ...]) -> tuple[str, Any]:
        url = self._absolute(ref, base)
        if url in stack:
            raise _invalid(f"remote contexts include each other: {' -> '.join((*stack, url))}")
        if len(stack) >= MAX_NESTING:
            raise _invalid(f"remote contexts nested deeper than {MAX_NESTING} levels at {url}")
        self._remote += 1
        if self._remote > MAX_REMOTE:
            raise _invalid(f"more than {MAX_REMOTE} remote contexts")
        context = self._load(url)
        if url not in self.urls:
            self.urls.append(url)
        return url, context

    def _include(self, ref: str, base: str | None, stack: tuple[str, ...]) -> None:
        if is_core_context_url(ref):
            if ref not in self.urls:
                self.urls.append(ref)
            return
        self.touched = True
        url, context = self._fetch(ref, base, stack)
        self.process(context, url, (*stack, url))

    def _local(self, ctx: dict[str, Any], base: str | None, stack: tuple[str, ...]) -> None:
        if self.user and ctx:
            self.touched = True
        if "@import" in ctx:
            ref = ctx["@import"]
            if not isinstance(ref, str):
                raise _invalid(f"@import must be a URL, not {_kind(ref)}")
            imported: Any = {}
            if not is_core_context_url(ref):
                url, imported = self._fetch(ref, base, stack)
                if not isinstance(imported, dict):
                    raise _invalid(f"@import {url} must be a context object, not {_kind(imported)}")
                if "@import" in imported:
                    raise _invalid(f"@import {url} contains an @import itself")
            ctx = {**imported, **{k: v for k, v in ctx.items() if k != "@import"}}
        if "@version" in ctx and (isinstance(ctx["@version"], bool) or ctx["@version"] != 1.1):
            raise _invalid(f"@version must be 1.1, not {ctx['@version']!r}")
        for key, kinds in (
            ("@base", (str, type(None))),
            ("@language", (str, type(None))),
            ("@direction", (str, type(None))),
            ("@propagate", (bool,)),
            ("@protected", (bool,)),
        ):
            if key in ctx and not isinstance(ctx[key], kinds):
                raise _invalid(f"{key} cannot be {_kind(ctx[key])}")
        if "@vocab" in ctx:
            self._set_vocab(ctx["@vocab"])
        defined: dict[str, bool] = {}
        for term in ctx:
            if term not in _CONTEXT_KEYS and term != "@vocab":
                self._define(term, ctx, defined)

    def _set_vocab(self, value: Any) -> None:
        if value is None:
            self.vocab = DEFAULT_VOCAB if self.user else None
            return
        if not isinstance(value, str):
            raise _invalid(f"@vocab must be an IRI, not {_kind(value)}")
        iri = self._expand_iri(value, None, None, vocab_fallback=False)
        if not _is_iri(iri):
            raise _invalid(f"@vocab must be an absolute IRI, a compact IRI or a term: {value!r}")
        self.vocab = iri

    # term definitions
    def _define(self, term: str, local: dict[str, Any], defined: dict[str, bool]) -> None:
        state = defined.get(term)
        if state is True:
            return
        if state is False:
            raise _invalid(f"the definition of term {term!r} depends on itself")
        if term == "":
            raise _invalid("a term cannot be the empty string")
        value = local[term]
        if term in _KEYWORDS:
            if (
                term == "@type"
                and isinstance(value, dict)
                and set(value) <= {"@container", "@protected"}
                and value.get("@container", "@set") == "@set"
            ):
                defined[term] = True
                return
            raise _invalid(f"the keyword {term} cannot be redefined")
        if _KEYWORD_FORM.match(term):  # JSON-LD ignores terms that look like keywords
            defined[term] = True
            return
        defined[term] = False
        definition = self._make(term, value, local, defined)
        defined[term] = True
        self._store(term, definition)

    def _store(self, term: str, definition: _Term | None) -> None:
        core = self.protected.get(term)
        if core is not None:
            if (definition is None or not definition.same_as(core)) and term not in self.ignored:
                self.ignored.append(term)
            return
        if definition is None:
            self.terms.pop(term, None)
            self.user_terms.discard(term)
            return
        self.terms[term] = definition
        if self.user:
            self.user_terms.add(term)

    def _make(
        self, term: str, value: Any, local: dict[str, Any], defined: dict[str, bool]
    ) -> _Term | None:
        if value is None:
            return None
        simple = isinstance(value, str)
        if simple:
            spec: dict[str, Any] = {"@id": value}
        elif isinstance(value, dict):
            spec = value
        else:
            raise _invalid(
                f"the definition of term {term!r} must be a string, an object or null, "
                f"not {_kind(value)}"
            )
        for key in spec:
            if key not in _DEFINITION_KEYS:
                raise _invalid(f"the definition of term {term!r} has an unknown member {key!r}")
        reverse = False
        prefix = False
        if "@reverse" in spec:
            if "@id" in spec or "@nest" in spec:
                raise _invalid(f"term {term!r}: @reverse cannot go with @id or @nest")
            ref = spec["@reverse"]
            if not isinstance(ref, str):
                raise _invalid(f"the @reverse of term {term!r} must be a string, not {_kind(ref)}")
            iri = self._expand_iri(ref, local, defined)
            if not _is_iri(iri):
                raise _invalid(f"the @reverse of term {term!r} is not an IRI: {ref!r}")
            reverse = True
        elif "@id" in spec and spec["@id"] != term:
            ref = spec["@id"]
            if ref is None:
                return None
            if not isinstance(ref, str):
                raise _invalid(f"the @id of term {term!r} must be a string, not {_kind(ref)}")
            if ref not in _KEYWORDS and _KEYWORD_FORM.match(ref):
                return None  # JSON-LD ignores IRIs that look like keywords
            iri = self._expand_iri(ref, local, defined)
            if iri == "@context":
                raise _invalid(f"term {term!r} cannot be an alias of @context")
            if iri not in _KEYWORDS and not _is_iri(iri):
                raise _invalid(f"the @id of term {term!r} is not an IRI: {ref!r}")
            prefix = (
                simple
                and ":" not in term
                and "/" not in term
                and iri not in _KEYWORDS
                and (iri[-1] in _GEN_DELIMS or iri.startswith("_:"))
            )
        elif ":" in term[1:]:
            head, tail = term.split(":", 1)
            if head in local and head != term:
                self._define(head, local, defined)
            head_def = self.terms.get(head)
            iri = (
                head_def.iri + tail if head_def is not None and not tail.startswith("//") else term
            )
        elif "/" in term:
            iri = self._expand_iri(term, local, defined)
            if not _is_iri(iri):
                raise _invalid(f"term {term!r} is not an IRI")
        elif self.vocab is None:
            raise _invalid(f"term {term!r} has no @id and there is no @vocab")
        else:
            iri = self.vocab + term
        type_: str | None = None
        if "@type" in spec:
            ref = spec["@type"]
            if not isinstance(ref, str):
                raise _invalid(f"the @type of term {term!r} must be a string, not {_kind(ref)}")
            type_ = self._expand_iri(ref, local, defined)
            if type_ not in _TYPE_KEYWORDS and not _SCHEME.match(type_):
                raise _invalid(f"the @type of term {term!r} is not an IRI: {ref!r}")
        container: tuple[str, ...] = ()
        if "@container" in spec:
            raw = spec["@container"]
            items = [raw] if isinstance(raw, str) else raw
            if not isinstance(items, list) or not all(
                isinstance(i, str) and i in _CONTAINERS for i in items
            ):
                raise _invalid(f"the @container of term {term!r} is not valid: {raw!r}")
            container = tuple(items)
        if "@prefix" in spec:
            flag = spec["@prefix"]
            if not isinstance(flag, bool) or ":" in term or "/" in term:
                raise _invalid(f"the @prefix of term {term!r} is not valid")
            prefix = flag and iri not in _KEYWORDS
        if "@protected" in spec and not isinstance(spec["@protected"], bool):
            raise _invalid(f"the @protected of term {term!r} must be a boolean")
        for key, kinds in (
            ("@context", (dict, list, str, type(None))),
            ("@language", (str, type(None))),
            ("@direction", (str, type(None))),
            ("@index", (str,)),
            ("@nest", (str,)),
        ):
            if key in spec and not isinstance(spec[key], kinds):
                raise _invalid(f"the {key} of term {term!r} cannot be {_kind(spec[key])}")
        extra = tuple((k, spec[k]) for k in _EXTRA_KEYS if k in spec)
        return _Term(iri, reverse, type_, container, prefix, extra)

    def _expand_iri(
        self,
        value: str,
        local: dict[str, Any] | None,
        defined: dict[str, bool] | None,
        *,
        vocab_fallback: bool = True,
    ) -> str:
        """JSON-LD IRI expansion (vocab=true) while a local context is being processed."""
        if value in _KEYWORDS or _KEYWORD_FORM.match(value):
            return value
        if local is not None and defined is not None and value in local and not defined.get(value):
            self._define(value, local, defined)
        found = self.terms.get(value)
        if found is not None:
            return found.iri
        colon = value.find(":")
        if colon > 0:
            prefix, suffix = value[:colon], value[colon + 1 :]
            if prefix == "_" or suffix.startswith("//"):
                return value
            if local is not None and defined is not None and prefix in local:
                self._define(prefix, local, defined)
            head = self.terms.get(prefix)
            if head is not None and head.prefix:
                return head.iri + suffix
            if _SCHEME.match(value):
                return value
        if vocab_fallback and self.vocab is not None:
            return self.vocab + value
        return value


def _core_tables() -> _Tables:
    builder = _Builder(lambda url: None, None)
    builder.process(CORE_CONTEXT, None, ())
    assert builder.vocab is not None
    return _Tables(builder.terms, builder.vocab, frozenset())


_CORE: Final = _core_tables()


# -- the resolver -----------------------------------------------------------------------------
@dataclass(slots=True)
class _Entry:
    """A context document the resolver knows."""

    key: str
    kind: str  # Core | Hosted | Preloaded | Cached
    context: Any
    local_id: str
    created: float
    document: dict[str, Any] | None = None
    hits: int = 0
    last_usage: float | None = None

    def info(self) -> dict[str, Any]:
        return {
            "url": self.key,
            "localId": self.local_id,
            "kind": self.kind,
            "createdAt": _iso(self.created),
            "numberOfHits": self.hits,
            "lastUsage": _iso(self.last_usage),
        }


@dataclass(slots=True)
class _Pending:
    """A fetch in progress that other threads wait for."""

    done: threading.Event = field(default_factory=threading.Event)
    context: Any = None
    error: SenCityError | None = None


def _local_id(url: str) -> str:
    return HOSTED_PREFIX + str(uuid.uuid5(uuid.NAMESPACE_URL, url))


def _context_of(document: Any, where: str) -> Any:
    if not isinstance(document, dict) or "@context" not in document:
        raise _invalid(f"{where} is not a JSON-LD document with an @context member")
    return document["@context"]


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


class _OnlyHttp(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            fp.close()
            raise urllib.error.URLError(f"redirected to a non-HTTP URL {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class ContextResolver:
    """Resolves @context values to :class:`ActiveContext` objects; thread-safe.

    ``preload`` maps context URLs to a local file (a path) or to the JSON text of the
    document; the documents are read and checked here (:class:`~sencity.errors.ConfigError`
    when one cannot be).  With ``fetch`` other http(s) URLs are fetched, each within
    ``timeout`` seconds in all and at most ``max_bytes`` long, and kept (LRU, at most
    ``cache_size`` of them; as many resolved contexts are kept).  ``store_hook(id, doc)``
    is called when a hosted context is added (``doc``) or deleted (``None``), so that
    the application can persist them; :meth:`restore_hosted` loads them back.
    """

    def __init__(
        self,
        preload: Mapping[str, str | Path] | None = None,
        *,
        fetch: bool = True,
        timeout: float = 5.0,
        max_bytes: int = 1_000_000,
        cache_size: int = 256,
        failure_ttl: float = 10.0,
        store_hook: Callable[[str, Mapping[str, Any] | None], None] | None = None,
    ) -> None:
        if timeout <= 0 or max_bytes <= 0 or cache_size <= 0 or failure_ttl < 0:
            raise ValueError("timeout, max_bytes and cache_size must be positive")
        self._fetch_enabled = fetch
        self._timeout = float(timeout)
        self._max_bytes = max_bytes
        self._cache_size = cache_size
        self._failure_ttl = failure_ttl
        self._store_hook = store_hook
        self._lock = threading.Lock()
        created = _now()
        self._entries: dict[str, _Entry] = {
            url: _Entry(url, "Core", CORE_CONTEXT, _local_id(url), created)
            for url in CORE_CONTEXT_URLS
        }
        self._cached: OrderedDict[str, None] = OrderedDict()
        self._failures: dict[str, tuple[float, SenCityError]] = {}
        self._pending: dict[str, _Pending] = {}
        self._resolved: OrderedDict[str, ActiveContext] = OrderedDict()
        self._core = ActiveContext(CORE_CONTEXT_URL, _CORE, core_only=True)
        self._opener = urllib.request.OpenerDirector()
        for handler in (
            urllib.request.ProxyHandler(),
            urllib.request.HTTPHandler(),
            urllib.request.HTTPSHandler(),
            _OnlyHttp(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
        ):
            self._opener.add_handler(handler)
        problems = []
        for url, source in (preload or {}).items():
            if is_core_context_url(url):
                continue
            try:
                context = self._read_preload(url, source)
            except (OSError, ValueError, BadRequest) as exc:
                problems.append(f"context preload {url}: {exc}")
                continue
            self._entries[url] = _Entry(url, "Preloaded", context, _local_id(url), created)
        if problems:
            raise ConfigError("\n".join(problems))
        self._by_local_id = {e.local_id: k for k, e in self._entries.items()}

    @staticmethod
    def _read_preload(url: str, source: str | Path) -> Any:
        if isinstance(source, str) and source.lstrip().startswith(("{", "[")):
            text = source
        else:
            text = Path(source).read_text(encoding="utf-8-sig")
        return _copy(_context_of(json.loads(text), str(source)))

    # resolution
    def resolve(self, context: Any) -> ActiveContext:
        """The active context for a @context value (``None``: the core context only).

        Raises :class:`~sencity.errors.BadRequest` for an invalid context and
        :class:`~sencity.errors.LdContextNotAvailable` for a remote one that cannot be
        retrieved.
        """
        if context is None:
            return self._core
        if isinstance(context, str):
            key = context
        else:
            try:
                key = "\0" + json.dumps(context, separators=(",", ":"), ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise _invalid(f"not a JSON value ({exc})") from exc
        with self._lock:
            found = self._resolved.get(key)
            if found is not None:
                self._resolved.move_to_end(key)
                self._touch(found.urls)
                return found
        active = self._build(context)
        with self._lock:
            self._resolved[key] = active
            while len(self._resolved) > self._cache_size:
                self._resolved.popitem(last=False)
            self._touch(active.urls)
        return active

    def _build(self, context: Any) -> ActiveContext:
        if not isinstance(context, str | list | dict):
            raise _invalid(f"it must be a URL, an object or an array, not {_kind(context)}")
        builder = _Builder(self._load, _CORE)
        builder.process(context, None, ())
        assert builder.vocab is not None
        if builder.touched:
            tables = _Tables(builder.terms, builder.vocab, frozenset(builder.user_terms))
        else:
            tables = _CORE
        return ActiveContext(
            context,
            tables,
            core_only=not builder.touched,
            urls=tuple(builder.urls),
            ignored_terms=tuple(builder.ignored),
        )

    def _touch(self, keys: Iterable[str]) -> None:
        now = _now()
        for key in keys:
            entry = self._entries.get(key) or self._entries.get(self._hosted_key(key) or "")
            if entry is not None:
                entry.hits += 1
                entry.last_usage = now

    def _hosted_key(self, ref: str) -> str | None:
        """The hosted context id a URL names (``…/jsonldContexts/<id>``), if any."""
        if ref.startswith(HOSTED_PREFIX):
            return ref
        path = urlsplit(ref).path
        head, _, last = path.rpartition("/")
        if head.endswith("/jsonldContexts"):
            ident = unquote(last)
            if ident.startswith(HOSTED_PREFIX):
                return ident
        return None

    # documents
    def _load(self, url: str) -> Any:
        """The @context value of the document at ``url`` (hosted, preloaded or fetched)."""
        with self._lock:
            entry = self._find(url)
            if entry is not None:
                if entry.kind == "Cached":
                    self._cached.move_to_end(entry.key)
                return entry.context
            failure = self._failures.get(url)
            if failure is not None:
                if failure[0] > time.monotonic():
                    raise type(failure[1])(failure[1].detail)
                del self._failures[url]
            if not self._fetch_enabled:
                raise LdContextNotAvailable(
                    f"@context {url} is not available: it is not preloaded and fetching "
                    "remote contexts is disabled"
                )
            pending = self._pending.get(url)
            owner = pending is None
            if pending is None:
                pending = self._pending[url] = _Pending()
        if not owner:
            if not pending.done.wait(self._timeout + 1.0):
                raise LdContextNotAvailable(
                    f"@context {url} could not be fetched within {self._timeout:g} s"
                )
            if pending.error is not None:
                raise type(pending.error)(pending.error.detail)
            return pending.context
        try:
            context = self._download(url)
        except SenCityError as exc:
            pending.error = exc
            with self._lock:
                if self._failure_ttl > 0:
                    self._failures[url] = (time.monotonic() + self._failure_ttl, exc)
            raise
        else:
            pending.context = context
            with self._lock:
                self._entries[url] = _Entry(url, "Cached", context, _local_id(url), _now())
                self._by_local_id[self._entries[url].local_id] = url
                self._cached[url] = None
                while len(self._cached) > self._cache_size:
                    old, _ = self._cached.popitem(last=False)
                    gone = self._entries.pop(old, None)
                    if gone is not None:
                        self._by_local_id.pop(gone.local_id, None)
            return context
        finally:
            with self._lock:
                self._pending.pop(url, None)
            pending.done.set()

    def _download(self, url: str) -> Any:
        """Fetches and parses a remote context within ``timeout`` seconds in all."""
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise LdContextNotAvailable(
                f"@context {url} is not available: only http(s) URLs can be fetched"
            )
        deadline = time.monotonic() + self._timeout
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["body"] = self._get(url, deadline)
            except BaseException as exc:  # reported to the waiting caller
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="ldcontext-fetch", daemon=True).start()
        if not done.wait(max(0.0, deadline - time.monotonic()) + 0.05) or (
            isinstance(box.get("error"), TimeoutError)
        ):
            raise LdContextNotAvailable(
                f"@context {url} could not be fetched within {self._timeout:g} s"
            )
        error = box.get("error")
        if error is not None:
            raise LdContextNotAvailable(f"@context {url} could not be fetched: {error}")
        try:
            document = json.loads(box["body"])
        except (ValueError, UnicodeDecodeError) as exc:
            raise _invalid(f"{url} is not valid JSON ({exc})") from exc
        return _context_of(document, url)

    def _get(self, url: str, deadline: float) -> bytes:
        request = urllib.request.Request(  # noqa: S310 — the scheme is checked above
            url, headers={"Accept": _ACCEPT, "User-Agent": "sencity-ldcontext"}
        )
        try:
            response = self._opener.open(request, timeout=self._timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise RuntimeError(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise exc.reason from None
            raise RuntimeError(str(exc.reason)) from None
        with response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > self._max_bytes:
                raise RuntimeError(f"it is larger than {self._max_bytes} bytes")
            chunks: list[bytes] = []
            size = 0
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError("deadline passed")
                try:
                    chunk = response.read1(65536)
                except (OSError, http.client.HTTPException) as exc:
                    if isinstance(exc, TimeoutError):
                        raise
                    raise RuntimeError(str(exc) or type(exc).__name__) from None
                if not chunk:
                    break
                size += len(chunk)
                if size > self._max_bytes:
                    raise RuntimeError(f"it is larger than {self._max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

    def _find(self, ref: str) -> _Entry | None:
        entry = self._entries.get(ref)
        if entry is not None:
            return entry
        key = self._by_local_id.get(ref)
        if key is not None:
            return self._entries.get(key)
        hosted = self._hosted_key(ref)
        return self._entries.get(hosted) if hosted else None

    # hosted contexts and the /jsonldContexts API
    def cached(self) -> list[dict[str, Any]]:
        """What the resolver holds: ``url``, ``localId``, ``kind`` (``Core``, ``Hosted``,
        ``Preloaded`` or ``Cached``), ``createdAt``, ``numberOfHits``, ``lastUsage``."""
        order = {"Core": 0, "Hosted": 1, "Preloaded": 2, "Cached": 3}
        with self._lock:
            entries = sorted(self._entries.values(), key=lambda e: (order[e.kind], e.created))
            return [e.info() for e in entries]

    def add_hosted(self, context_doc: Mapping[str, Any]) -> str:
        """Stores a context document (``{"@context": …}``); returns its new id."""
        if not isinstance(context_doc, Mapping) or "@context" not in context_doc:
            raise BadRequest("a context document must be an object with an @context member")
        document = _copy(dict(context_doc))
        self._build(document["@context"])  # reject an invalid context now
        ident = HOSTED_PREFIX + str(uuid.uuid4())
        with self._lock:
            self._entries[ident] = _Entry(
                ident, "Hosted", document["@context"], ident, _now(), document
            )
            self._by_local_id[ident] = ident
        if self._store_hook is not None:
            try:
                self._store_hook(ident, _copy(document))
            except BaseException:
                with self._lock:
                    self._entries.pop(ident, None)
                    self._by_local_id.pop(ident, None)
                raise
        return ident

    def restore_hosted(self, documents: Mapping[str, Mapping[str, Any]]) -> None:
        """Loads hosted contexts saved before (id -> document); the hook is not called."""
        with self._lock:
            for ident, doc in documents.items():
                if not ident.startswith(HOSTED_PREFIX):
                    raise ValueError(f"{ident!r} is not a hosted context id")
                document = _copy(dict(doc))
                context = _context_of(document, ident)
                self._entries[ident] = _Entry(ident, "Hosted", context, ident, _now(), document)
                self._by_local_id[ident] = ident
            self._resolved.clear()

    def get_hosted(self, ident: str) -> dict[str, Any]:
        """The document of a context by hosted id, local id or URL (any kind)."""
        with self._lock:
            entry = self._find(ident)
            if entry is None:
                raise NotFound(f"no @context {ident}")
            document = entry.document if entry.document is not None else {"@context": entry.context}
            result: dict[str, Any] = _copy(document)
            return result

    get = get_hosted

    def delete(self, ident: str) -> None:
        """Deletes a hosted context, or drops a fetched one (fetched again when used)."""
        with self._lock:
            entry = self._find(ident)
            if entry is None:
                raise NotFound(f"no @context {ident}")
            if entry.kind in ("Core", "Preloaded"):
                raise BadRequest(
                    f"@context {entry.key} is built in or preloaded: it cannot be deleted"
                )
            del self._entries[entry.key]
            self._by_local_id.pop(entry.local_id, None)
            self._cached.pop(entry.key, None)
            self._failures.pop(entry.key, None)
            self._resolved.clear()
        if entry.kind == "Hosted" and self._store_hook is not None:
            self._store_hook(entry.key, None)


# -- Link headers -----------------------------------------------------------------------------
_TOKEN = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*(\"(?:[^\"\\]|\\.)*\"|[^;,\s]*))?")


def _links(value: str) -> list[tuple[str, dict[str, str]]]:
    """Parses an HTTP ``Link`` header value (RFC 8288) into (URL, parameters) pairs."""
    out: list[tuple[str, dict[str, str]]] = []
    pos, end = 0, len(value)
    while True:
        while pos < end and value[pos] in " \t,":
            pos += 1
        if pos >= end:
            return out
        if value[pos] != "<":
            raise BadRequest(f"malformed Link header: expected '<' at position {pos}")
        close = value.find(">", pos)
        if close < 0:
            raise BadRequest("malformed Link header: '<' without '>'")
        url = value[pos + 1 : close].strip()
        pos = close + 1
        params: dict[str, str] = {}
        while True:
            while pos < end and value[pos] in " \t":
                pos += 1
            if pos >= end or value[pos] == ",":
                break
            if value[pos] != ";":
                raise BadRequest(f"malformed Link header: expected ';' at position {pos}")
            pos += 1
            while pos < end and value[pos] in " \t":
                pos += 1
            match = _TOKEN.match(value, pos)
            if match is None:
                raise BadRequest(f"malformed Link header: bad parameter at position {pos}")
            raw = match.group(2) or ""
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            params.setdefault(match.group(1).lower(), raw)
            pos = match.end()
        out.append((url, params))


def link_header_context(link: str) -> str:
    """The @context URL of a ``Link`` header value with ``rel="…json-ld#context"``.

    Raises :class:`~sencity.errors.BadRequest` when the header is malformed, has no
    JSON-LD context link, or has more than one.
    """
    found = [
        url for url, params in _links(link) if JSONLD_CONTEXT_REL in params.get("rel", "").split()
    ]
    if not found:
        raise BadRequest(f'the Link header has no link with rel="{JSONLD_CONTEXT_REL}"')
    if len(found) > 1:
        raise BadRequest("the Link header has more than one JSON-LD @context link")
    if not found[0]:
        raise BadRequest("the Link header's @context URL is empty")
    return found[0]


def link_header(url: str) -> str:
    """A ``Link`` header value that points to a JSON-LD @context."""
    return f'<{url}>; rel="{JSONLD_CONTEXT_REL}"; type="application/ld+json"'
