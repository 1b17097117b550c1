"""Authentication (passwords, bearer tokens, API keys) and authorisation (roles per tenant)."""

from sencity.auth.roles import ADMIN, ANY_ROLE, READERS, ROLES, WRITERS
from sencity.auth.service import AuthService, Principal

__all__ = ["ADMIN", "ANY_ROLE", "READERS", "ROLES", "WRITERS", "AuthService", "Principal"]
