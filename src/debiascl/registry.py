"""Registries of the named building blocks a config chooses from.

Each registry maps a name to what the name stands for (a method class, a backbone's data kind,
a projection head's layout, an augmentation's data kinds). The modules that define the blocks
fill them when imported (``debiascl/__init__.py`` imports them, so any import of the package
sees every built-in); :mod:`debiascl.config` reads them to list and check the choices of
``method.name``, ``model.backbone``, ``model.head`` and ``data.augmentation``. This module
imports nothing heavy, so config can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from debiascl.errors import DebiasclError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Names of one kind of building block, in registration order.

    Args:
        setting: the config key that chooses among them (e.g. "method.name"); named in errors.
    """

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name registered twice is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.setting} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def add_alias(self, alias: str, name: str) -> None:
        """Accept ``alias`` wherever ``name`` is accepted (listings show only ``name``)."""
        if alias in self._entries or alias in self._aliases or name not in self._entries:
            raise ValueError(f"{self.setting} alias '{alias}' of '{name}' is not available")
        self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The registered name of ``name`` or of the alias ``name`` (anything else unchanged)."""
        return self._aliases.get(name, name)

    def lookup(self, name: str) -> T:
        """The entry of ``name`` (or alias), or a DebiasclError naming the setting and every
        choice."""
        if self.canonical(name) not in self._entries:
            raise DebiasclError(
                f"setting '{self.setting}' = {name!r}: expected one of {', '.join(self)}"
            )
        return self._entries[self.canonical(name)]

    def __getitem__(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.setting}: {', '.join(self)})"


METHODS: Registry[type] = Registry("method.name")
"""Method classes (:class:`debiascl.methods.Method` subclasses), filled by ``register_method``."""
BACKBONES: Registry[str] = Registry("model.backbone")
"""Backbone name -> the data kind it reads ("image" or "table"), filled by debiascl.models."""
HEADS: Registry[dict[str, bool]] = Registry("model.head")
"""Projection head name -> its layout flags, filled by debiascl.models."""
AUGMENTATIONS: Registry[tuple[str, ...]] = Registry("data.augmentation")
"""View pipeline name -> the data kinds it applies to, filled by debiascl.data.views."""
