"""Name-keyed registries filled by explicit registration lines (no star imports, no metaclasses)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to factories.

    Names may be exact (``"pad"``) or prefixes ending in ``":"`` (``"timm:"``), in which case the
    factory receives the rest of the name as its first argument (``create("timm:resnet50")`` calls
    the ``"timm:"`` factory with ``"resnet50"``).

    Args:
        kind: what is registered, for error messages ("backbone", "transform", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None):
        """Register ``factory`` under ``name``; usable as a decorator when ``factory`` is omitted."""

        def add(f: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = f
            return f

        return add(factory) if factory is not None else add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (e.g. a method a test registered for itself)."""
        if name not in self._factories:
            raise KeyError(f"{self.kind} {name!r} is not registered; registered: {', '.join(self.names())}")
        del self._factories[name]

    def names(self) -> list[str]:
        """All registered names (prefix families end in ``:``)."""
        return sorted(self._factories)

    def resolve(self, name: str) -> tuple[Callable[..., T], tuple[str, ...]]:
        """The factory for ``name`` and the positional arguments it receives."""
        if name in self._factories:
            return self._factories[name], ()
        if ":" in name:
            prefix, rest = name.split(":", 1)
            f = self._factories.get(prefix + ":")
            if f is not None and rest:
                return f, (rest,)
        raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")

    def create(self, name: str, **options) -> T:
        """Build the object registered under ``name`` with keyword ``options``."""
        factory, args = self.resolve(name)
        return factory(*args, **options)

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except KeyError:
            return False
        return True


def lazy(module: str, attr: str) -> Callable[..., T]:
    """A factory that imports ``module`` only when called, so that listing names stays cheap.

    Example: ``REGISTRY.register("timm:", lazy("backbones.timm_image", "build"))``.
    """

    def factory(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    factory.__qualname__ = f"lazy({module}.{attr})"
    return factory
