"""The two builds of a module mypyc may compile (setup.py): as imported, and from its source."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def source_of(module: ModuleType) -> Path:
    assert module.__file__ is not None
    return Path(module.__file__).with_name(module.__name__.rsplit(".", 1)[-1] + ".py")


def from_source(module: ModuleType) -> ModuleType:
    """`module`'s .py file executed as Python, whichever build `import` picks."""
    name = f"{module.__name__}_source"
    spec = importlib.util.spec_from_file_location(name, source_of(module))
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def both(module: ModuleType) -> dict[str, ModuleType]:
    return {"imported": module, "source": from_source(module)}


def assert_built_from_current_source(module: ModuleType) -> None:
    """An editable install keeps the build next to the source; an edit after the build would
    otherwise be shadowed by the stale extension (scripts/bootstrap.sh rebuilds it)."""
    assert module.__file__ is not None
    if module.__file__.endswith(".py"):
        return
    source = source_of(module)
    assert Path(module.__file__).stat().st_mtime >= source.stat().st_mtime, (
        f"{module.__file__} is older than {source}: run scripts/bootstrap.sh to rebuild"
    )
