"""Roles.  A user holds one role per tenant; the tenant ``*`` means every tenant.

Routes declare the set of roles they accept; these sets are the common ones.
"""

from __future__ import annotations

ROLES: tuple[str, ...] = ("admin", "operator", "dispatcher", "analyst", "viewer")
ALL_TENANTS = "*"

ADMIN = frozenset({"admin"})
#: may change city data and run operations
WRITERS = frozenset({"admin", "operator"})
#: may read city data
READERS = frozenset(ROLES)
ANY_ROLE = READERS


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}' (roles: {', '.join(ROLES)})")
    return role
