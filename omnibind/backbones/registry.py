"""The backbone registry: names and prefixes -> factories, loaded once per process.

No hard-coded import list: a family module is found by the entry point named like the reference
(`minilm`, or `hf` for `hf:<id>`) in the `omnibind.backbones` group and imported on first use;
importing it runs its `@register` decorators. `register` also works at run time (tests, notebooks).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from omnibind.backbones.base import Backbone
from omnibind.errors import BackboneError

GROUP = "omnibind.backbones"
Factory = Callable[[str, str], Backbone]  # (argument after the prefix, modality) -> backbone
_FACTORIES: dict[str, tuple[Factory, str | None]] = {}
_LOADED: dict[tuple[str, str], Backbone] = {}
_LOCK = threading.RLock()


def register(name: str, modality: str | None = None) -> Callable[[Factory], Factory]:
    """Register a factory for `name` (exact) or `name:` (prefix, e.g. `hf:<id>`)."""

    def wrap(factory: Factory) -> Factory:
        _FACTORIES[name] = (factory, modality)
        return factory

    return wrap


def unregister(name: str) -> None:
    """Forget a factory and the backbones it made (tests that register toys clean up with this)."""
    with _LOCK:
        _FACTORIES.pop(name, None)
        for key in [k for k in _LOADED if k[0] == name or (name.endswith(":") and k[0].startswith(name))]:
            del _LOADED[key]


def known() -> list[str]:
    """Every registered name and every declared family (prefixes end with ':')."""
    return sorted(set(_FACTORIES) | {ep.name for ep in _entry_points()})


def default_modality(ref: str) -> str | None:
    """The modality a plain backbone name serves (None for prefixes that serve several)."""
    entry = _factory_for(ref)
    return entry[2] if entry and entry[0] == ref else None


def load_backbone(ref: str, modality: str | None = None) -> Backbone:
    """Load (once per process) the backbone `ref` for `modality`."""
    found = _factory_for(ref)
    if found is None:
        raise BackboneError(f"unknown backbone {ref!r}; known: {', '.join(known())} (prefixes end with ':')")
    name, (factory, fixed) = found[0], found[1:]
    arg = "" if name == ref else ref.split(":", 1)[1]
    modality = modality or fixed
    if modality is None:
        raise BackboneError(f"backbone {ref!r} serves several modalities; name one")
    if fixed and modality != fixed:
        raise BackboneError(f"backbone {ref!r} serves {fixed}, not {modality}")
    with _LOCK:
        if (ref, modality) not in _LOADED:
            _LOADED[(ref, modality)] = factory(arg, modality)
        return _LOADED[(ref, modality)]


def clear_loaded() -> None:
    """Drop every loaded backbone (their memory goes with the last reference)."""
    with _LOCK:
        _LOADED.clear()


def _factory_for(ref: str) -> tuple[str, Factory, str | None] | None:
    """(registered name, factory, fixed modality) for a reference, importing its family if needed."""
    for attempt in range(2):
        if ref in _FACTORIES:
            return (ref, *_FACTORIES[ref])
        prefix = ref.split(":", 1)[0] + ":" if ":" in ref else None
        if prefix and prefix in _FACTORIES:
            return (prefix, *_FACTORIES[prefix])
        if attempt == 0:
            _import_family(ref.split(":", 1)[0])
    return None


def _import_family(name: str) -> None:
    with _LOCK:
        matches = [ep for ep in _entry_points() if ep.name == name]
        if matches:
            for ep in matches:
                module = ep.load()
                if name not in _FACTORIES and f"{name}:" not in _FACTORIES and hasattr(module, "__name__"):
                    importlib.reload(module)  # imported before, its registrations since dropped (tests)
        elif not _entry_points():  # a source tree that was never installed: import every family
            for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
                if info.name not in ("base", "registry", "onnx"):
                    importlib.import_module(f"{__package__}.{info.name}")


def _entry_points() -> list:
    return list(entry_points(group=GROUP))
