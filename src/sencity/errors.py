"""Typed errors shared by every module.

Each error maps to one HTTP status and an RFC 9457 problem type.  The web adapter
turns them into ``application/problem+json`` bodies; the CLI prints their detail.
NGSI-LD error types are used where the standard defines one.
"""

from __future__ import annotations

from typing import Any, ClassVar

NGSI_LD_ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


class SenCityError(Exception):
    """Base class: ``status`` and ``type`` are class attributes, ``detail`` is per instance."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = NGSI_LD_ERRORS + "InternalError"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(SenCityError):
    status = 400
    type = NGSI_LD_ERRORS + "BadRequestData"
    title = "Bad request data"


class InvalidRequest(SenCityError):
    status = 400
    type = NGSI_LD_ERRORS + "InvalidRequest"
    title = "Invalid request"


class Unauthorized(SenCityError):
    status = 401
    type = "urn:sencity:problems:unauthorized"
    title = "Authentication required"


class Forbidden(SenCityError):
    status = 403
    type = "urn:sencity:problems:forbidden"
    title = "Forbidden"


class NotFound(SenCityError):
    status = 404
    type = NGSI_LD_ERRORS + "ResourceNotFound"
    title = "Resource not found"


class NonexistentTenant(SenCityError):
    status = 404
    type = NGSI_LD_ERRORS + "NonexistentTenant"
    title = "Nonexistent tenant"


class MethodNotAllowed(SenCityError):
    status = 405
    type = "urn:sencity:problems:method-not-allowed"
    title = "Method not allowed"


class AlreadyExists(SenCityError):
    status = 409
    type = NGSI_LD_ERRORS + "AlreadyExists"
    title = "Already exists"


class Conflict(SenCityError):
    status = 409
    type = "urn:sencity:problems:conflict"
    title = "Conflict"


class PayloadTooLarge(SenCityError):
    status = 413
    type = "urn:sencity:problems:payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(SenCityError):
    status = 415
    type = "urn:sencity:problems:unsupported-media-type"
    title = "Unsupported media type"


class TooManyRequests(SenCityError):
    status = 429
    type = "urn:sencity:problems:too-many-requests"
    title = "Too many requests"


class StoreUnavailable(SenCityError):
    status = 503
    type = "urn:sencity:problems:store-unavailable"
    title = "Store unavailable"


class ConfigError(Exception):
    """Invalid configuration; the message is one line per problem, naming the key."""


class NotAcceptable(SenCityError):
    status = 406
    type = "urn:sencity:problems:not-acceptable"
    title = "Not acceptable"


class TooManyResults(SenCityError):
    status = 403
    type = NGSI_LD_ERRORS + "TooManyResults"
    title = "Too many results"


class OperationNotSupported(SenCityError):
    status = 422
    type = NGSI_LD_ERRORS + "OperationNotSupported"
    title = "Operation not supported"


class LdContextNotAvailable(SenCityError):
    status = 503
    type = NGSI_LD_ERRORS + "LdContextNotAvailable"
    title = "LD context not available"
