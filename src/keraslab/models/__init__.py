"""Registered models. Importing this package registers every shipped model."""

from keraslab.models import text, vision  # noqa: F401  (registration side effects)
from keraslab.models.registry import ModelSpec, build, get, names, register

__all__ = ["ModelSpec", "build", "get", "names", "register"]
