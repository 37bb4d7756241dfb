"""Per-component configuration store with modification times and watchers.

Mirrors what components see of the Nucleus config store through IPC: a nested map per component,
every leaf stamped with the time it was last written, in epoch milliseconds as the Nucleus keeps
them; a write older than a leaf's stamp is ignored. A container's modification time is that of its
newest leaf (:meth:`ConfigStore.modtime`), as the Nucleus's ``Topics`` takes its children's.
Watchers get the key path (relative to the component's configuration) of each changed leaf.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

from ggvision.errors import IpcError

Path = tuple[str, ...]
Watcher = Callable[[str, list[str]], None]

_MISSING = object()


def now_ms() -> int:
    """The current time in epoch milliseconds, the unit of every stamp in the store."""
    return time.time_ns() // 1_000_000


def _not_found(path: Path) -> IpcError:
    return IpcError(
        "ResourceNotFoundError",
        "Key not found",
        resourceType="Configuration",
        resourceName="/".join(path),
    )


class ConfigStore:
    def __init__(self) -> None:
        self._values: dict[str, dict[str, Any]] = {}
        self._mtimes: dict[str, dict[Path, int]] = {}
        # When each container was made (epoch ms): an empty container's modification time.
        self._containers: dict[str, dict[Path, int]] = {}
        self._watchers: dict[str, list[tuple[Path, Watcher]]] = {}

    # --- component lifecycle -------------------------------------------------------------
    def set_component(self, component: str, configuration: Mapping[str, Any]) -> None:
        """Replace a component's whole configuration (registration); watchers see every change."""
        old = self._values.get(component)
        new = copy.deepcopy(dict(configuration))
        self._values[component] = new
        now = now_ms()
        self._mtimes[component] = {p: now for p in _leaf_paths(new)}
        self._containers[component] = {p: now for p in _container_paths(new)}
        if old is not None:
            changed = _diff_paths(old, new)
            self._notify(component, changed)

    def remove_component(self, component: str) -> None:
        self._values.pop(component, None)
        self._mtimes.pop(component, None)
        self._containers.pop(component, None)
        self._watchers.pop(component, None)

    def has_component(self, component: str) -> bool:
        return component in self._values

    def components(self) -> list[str]:
        return list(self._values)

    # --- reads -----------------------------------------------------------------------------
    def get(self, component: str, path: list[str] | Path) -> Any:
        """The node at ``path`` (a deep copy); ResourceNotFoundError when missing."""
        if component not in self._values:
            raise _not_found(tuple(path))
        node: Any = self._values[component]
        for key in path:
            if not isinstance(node, dict) or key not in node:
                raise _not_found(tuple(path))
            node = node[key]
        return copy.deepcopy(node)

    def snapshot(self, component: str) -> dict[str, Any]:
        return copy.deepcopy(self._values.get(component, {}))

    # --- writes ----------------------------------------------------------------------------
    def merge(
        self, component: str, path: list[str] | Path, value: Any, timestamp: int | None = None
    ) -> list[Path]:
        """Merge ``value`` at ``path``; returns the changed leaf paths (watchers already told).

        A map merges key by key; anything else replaces the node. ``timestamp`` (epoch ms, now
        when None) stamps every leaf written; leaves stamped newer are left alone, and a leaf
        given its own value again only has its stamp moved forward (no change, no event).
        """
        ts = now_ms() if timestamp is None else timestamp
        root = self._values.setdefault(component, {})
        mtimes = self._mtimes.setdefault(component, {})
        path = tuple(path)
        containers = self._containers.setdefault(component, {})
        parent: dict[str, Any] = root
        for i, key in enumerate(path[:-1]):
            child = parent.get(key, _MISSING)
            if child is _MISSING:
                child = parent[key] = {}
                containers[path[: i + 1]] = now_ms()
            elif not isinstance(child, dict):
                raise IpcError(
                    "InvalidArgumentsError",
                    f"Cannot merge under {'/'.join(path[: i + 1])}: it is a value, not a container",
                )
            parent = child
        changed: list[Path] = []
        if not path:
            if not isinstance(value, dict):
                raise IpcError("InvalidArgumentsError", "The configuration root must be a map")
            self._merge_map(root, value, (), ts, mtimes, changed, containers)
        else:
            self._merge_at(parent, path[-1], value, path, ts, mtimes, changed, containers)
        self._notify(component, changed)
        return changed

    def modtime(self, component: str, path: list[str] | Path) -> int | None:
        """When the node at ``path`` was last modified (epoch ms): a leaf's own stamp, a
        container's newest leaf's, a container with no leaves its own (when it was made, as a
        Nucleus ``Topics`` keeps it); None for a missing node."""
        path = tuple(path)
        stamps = self._mtimes.get(component, {})
        if path in stamps:
            return stamps[path]
        n = len(path)
        newest = max((t for p, t in stamps.items() if p[:n] == path), default=None)
        if newest is not None:
            return newest
        return self._containers.get(component, {}).get(path)

    def _merge_at(
        self,
        parent: dict[str, Any],
        key: str,
        value: Any,
        path: Path,
        ts: int,
        mtimes: dict[Path, int],
        changed: list[Path],
        empty: dict[Path, int],
    ) -> None:
        current = parent.get(key, _MISSING)
        if isinstance(value, dict):
            if current is _MISSING or not isinstance(current, dict):
                if current is not _MISSING:
                    # A map replacing a value: the Nucleus's Topics.updateChild removes the leaf
                    # whatever its stamp and creates the container stamped with the update.
                    mtimes.pop(path, None)
                    changed.append(path)
                    empty[path] = ts
                else:
                    empty[path] = now_ms()  # createInteriorChild: stamped now
                current = parent[key] = {}
            self._merge_map(current, value, path, ts, mtimes, changed, empty)
            return
        if isinstance(current, dict):
            # A value replacing a container: the subtree goes, whatever its stamps (as above).
            for p in [p for p in mtimes if p[: len(path)] == path]:
                del mtimes[p]
            for p in [p for p in empty if p[: len(path)] == path]:
                del empty[p]
        elif current is not _MISSING and mtimes.get(path, 0) > ts:
            return  # stale write
        mtimes[path] = ts
        if current is _MISSING or current != value or type(current) is not type(value):
            parent[key] = copy.deepcopy(value)
            changed.append(path)

    def _merge_map(
        self,
        target: dict[str, Any],
        value: dict[str, Any],
        path: Path,
        ts: int,
        mtimes: dict[Path, int],
        changed: list[Path],
        empty: dict[Path, int],
    ) -> None:
        for k, v in value.items():
            self._merge_at(target, str(k), v, (*path, str(k)), ts, mtimes, changed, empty)

    # --- watchers ----------------------------------------------------------------------------
    def watch(self, component: str, path: list[str] | Path, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(component, leaf_path)`` for each changed leaf at or under ``path``."""
        entry = (tuple(path), watcher)
        self._watchers.setdefault(component, []).append(entry)

        def cancel() -> None:
            lst = self._watchers.get(component)
            if lst and entry in lst:
                lst.remove(entry)

        return cancel

    def _notify(self, component: str, changed: list[Path]) -> None:
        watchers = self._watchers.get(component)
        if not watchers or not changed:
            return
        for leaf in changed:
            for prefix, watcher in list(watchers):
                if leaf[: len(prefix)] == prefix or prefix[: len(leaf)] == leaf:
                    watcher(component, list(leaf))


def _leaf_paths(node: Mapping[str, Any], prefix: Path = ()) -> list[Path]:
    out: list[Path] = []
    for k, v in node.items():
        p = (*prefix, str(k))
        if isinstance(v, Mapping):
            out.extend(_leaf_paths(v, p))
        else:
            out.append(p)
    return out


def _container_paths(node: Mapping[str, Any], prefix: Path = ()) -> list[Path]:
    """Every container under ``node`` (``node`` itself, the root, as ``()``)."""
    out: list[Path] = [prefix]
    for k, v in node.items():
        if isinstance(v, Mapping):
            out.extend(_container_paths(v, (*prefix, str(k))))
    return out


def _diff_paths(old: Any, new: Any, prefix: Path = ()) -> list[Path]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[Path] = []
        for k in old.keys() | new.keys():
            if k not in new:
                out.extend(
                    _leaf_paths({k: old[k]}, prefix) if isinstance(old[k], dict) else [(*prefix, k)]
                )
            elif k not in old:
                out.extend(
                    _leaf_paths({k: new[k]}, prefix) if isinstance(new[k], dict) else [(*prefix, k)]
                )
            else:
                out.extend(_diff_paths(old[k], new[k], (*prefix, k)))
        return out
    if old != new or type(old) is not type(new):
        return [prefix]
    return []
