"""The staff roles. Who may do what with them is services.authz; settings only need to know the names."""

from __future__ import annotations

ROLES: dict[str, str] = {"frontdesk": "Front desk", "manager": "Manager", "finance": "Finance", "admin": "Admin"}
