"""One registry for every pluggable role: names -> factories, prefix handlers, pattern listing, one clear error.

A role (attribute encoders, identity encoders, landmark models, detectors, restorers, zoo entries) owns one
:class:`Registry`. Implementations register a factory under a name; a prefix handler takes every name that
starts with its prefix and gets the rest (``timm:resnet18`` -> ``resnet18``, ``onnx:/models/w600k_r50.onnx``,
``insightface:/models/buffalo_l``). :meth:`Registry.create` builds by name, and an unknown name is one
:class:`~faceswap_pl.errors.UnknownNameError` with the close matches and every valid name.

Example:
    >>> shapes = Registry("shape")
    >>> @shapes.register("square")
    ... def square(side: float = 1.0) -> float:
    ...     return side * side
    >>> shapes.register_prefix("scaled:", lambda rest, **kw: 2 * float(rest), placeholder="<factor>")
    >>> shapes.create("square", side=3.0), shapes.create("scaled:1.5")
    (9.0, 3.0)
    >>> shapes.names()
    ['square', 'scaled:<factor>']
    >>> shapes.create("sqare")
    Traceback (most recent call last):
      ...
    faceswap_pl.errors.UnknownNameError: Unknown shape 'sqare' (did you mean square?); valid names: square, scaled:<factor>.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Any

from faceswap_pl.errors import UnknownNameError


class Registry:
    """The factories of one role (module docstring).

    Args:
        role: what the names name, for messages (``"identity encoder"``).
    """

    def __init__(self, role: str) -> None:
        self.role = role
        self._factories: dict[str, Callable[..., Any]] = {}
        self._prefixes: dict[str, tuple[Callable[..., Any], str]] = {}

    def register(self, name: str, factory: Callable[..., Any] | None = None):
        """Register ``factory`` under ``name``; without ``factory``, a decorator. A name is registered once."""
        def add(function: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories:
                raise ValueError(f"{self.role} {name!r} is registered twice")
            self._factories[name] = function
            return function

        return add if factory is None else add(factory)

    def register_prefix(self, prefix: str, factory: Callable[..., Any], placeholder: str) -> None:
        """Every name ``prefix + rest`` is built by ``factory(rest, **kwargs)``; listed as ``prefix + placeholder``."""
        self._prefixes[prefix] = (factory, placeholder)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching the shell-style ``pattern`` (prefix handlers as ``prefix<placeholder>``)."""
        listed = sorted(self._factories) + [prefix + placeholder for prefix, (_, placeholder) in self._prefixes.items()]
        return [name for name in listed if fnmatch.fnmatchcase(name, pattern)]

    def __contains__(self, name: str) -> bool:
        return name in self._factories or any(name.startswith(p) and name != p for p in self._prefixes)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._factories))

    def items(self) -> list[tuple[str, Any]]:
        """``(name, factory)`` pairs in registration order (prefix handlers not included)."""
        return list(self._factories.items())

    def factory(self, name: str) -> Callable[..., Any]:
        """The factory registered under ``name`` (not prefix names); :class:`UnknownNameError` otherwise."""
        if name not in self._factories:
            raise self.unknown(name)
        return self._factories[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build ``name`` with ``kwargs`` (a prefix name gets ``rest`` as its first argument)."""
        if not isinstance(name, str):
            raise UnknownNameError(f"A {self.role} name must be a string, got {name!r}; valid names: "
                                   f"{', '.join(self.names())}.")
        for prefix, (factory, _) in self._prefixes.items():
            if name.startswith(prefix) and name != prefix:
                return factory(name[len(prefix):], **kwargs)
        return self.factory(name)(**kwargs)

    def unknown(self, name: str) -> UnknownNameError:
        close = difflib.get_close_matches(str(name), list(self._factories), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return UnknownNameError(f"Unknown {self.role} {name!r}{hint}; valid names: {', '.join(self.names())}.")
