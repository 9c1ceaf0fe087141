"""Hash-keyed pipeline stages: a finished stage is reused while its config and inputs are unchanged.

Layout under a run folder::

    stages/<name>/        the stage's output folder
    stages/<name>.json    its marker: ``status`` ("running" or "done"), ``key``, ``spec``, ``output_id``
    stages.jsonl          one line per stage per invocation: ran / resumed / reused, seconds

A stage's key is the sha256 of its spec (its config plus the ``output_id`` of every stage it reads).
The ``done`` marker is written last and atomically, so a crash leaves either a reusable stage or one that
is redone. Each completed build gets a fresh ``output_id``: when a stage is rebuilt (its config changed,
or ``--force``), every stage downstream sees a new input and is rebuilt too. A stage interrupted with an
unchanged key is handed its folder back with ``resume=True`` (training continues from its checkpoint).
A finished stage with the same key under another name (a renamed variant, an SR backbone whose stage
name gained a ``-seed<s>`` suffix) is copied rather than rebuilt, keeping its ``output_id``, so the
stages downstream of it are reused too.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from rich.console import Console

from llara.errors import LlaraError
from llara.paths import atomic_file

#: the layout of stage specs; bump it when a config default changes (specs leave defaults out)
STAGE_FORMAT = 4
Action = Literal["ran", "resumed", "reused"]
Builder = Callable[[Path, bool], None]


@dataclass(frozen=True)
class StageResult:
    """A finished stage: where its output lies and what this invocation did with it."""

    name: str
    key: str
    output: Path
    output_id: str
    action: Action
    seconds: float


def config_spec(config: BaseModel, exclude: Collection[str] = ()) -> dict[str, Any]:
    """A config section as it enters a stage spec: only the fields set away from their defaults (less
    ``exclude``). A release that adds an option with a default thus leaves every finished stage reusable;
    one that changes an existing default must bump :data:`STAGE_FORMAT` (a test pins the defaults)."""
    return config.model_dump(mode="json", exclude=set(exclude), exclude_defaults=True)


def stage_key(spec: Mapping[str, Any]) -> str:
    """The sha256 of a JSON-able spec, canonicalised (sorted keys, no whitespace)."""
    canonical = json.dumps({"format": STAGE_FORMAT, "spec": spec}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def path_fingerprint(path: str | Path | None) -> list[Any] | None:
    """Size and mtime of a local file, or of every file below a folder; None for a non-local name.

    Part of a stage's spec where a config names a local file (custom data, a base-model folder), so
    editing that file redoes the stage.
    """
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.is_file():
        stat = path.stat()
        return [[path.name, stat.st_size, stat.st_mtime_ns]]
    if path.is_dir():
        return [
            [str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns]
            for f in sorted(path.rglob("*"))
            if f.is_file()
        ]
    return None


class StageStore:
    """Runs named stages under ``root``, reusing finished ones whose key is unchanged."""

    def __init__(self, root: str | Path, force: Collection[str] = (), console: Console | None = None) -> None:
        self.root = Path(root)
        self.force = list(force)
        self.console = console or Console(stderr=True)

    def marker_path(self, name: str) -> Path:
        """The marker file of stage ``name``."""
        return self.root / "stages" / f"{name}.json"

    def output_path(self, name: str) -> Path:
        """The output folder of stage ``name``."""
        return self.root / "stages" / name

    def read_marker(self, name: str) -> dict[str, Any] | None:
        """The stage's marker, or None when absent or unreadable (then the stage is redone)."""
        try:
            return json.loads(self.marker_path(name).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def is_forced(self, name: str) -> bool:
        """Whether ``--force`` patterns (exact names or globs such as ``train-*``) select this stage."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.force)

    def check_force(self, names: Collection[str]) -> None:
        """Refuse ``--force`` patterns that select none of ``names`` (the stages of this run): typos."""
        unmatched = [p for p in self.force if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unmatched:
            raise LlaraError(f"--force {', '.join(unmatched)} matches no stage; this run's stages: {', '.join(names)}")

    def run(
        self, name: str, spec: Mapping[str, Any], build: Builder, label: str | None = None
    ) -> StageResult:
        """Reuse stage ``name`` if done with the same key, else build it (``build(output, resume)``)."""
        key = stage_key(spec)
        output = self.output_path(name)
        marker = self.read_marker(name)
        same_key = marker is not None and marker.get("key") == key and output.is_dir()
        forced = self.is_forced(name)
        if same_key and not forced and marker["status"] == "done":
            return self._reused(name, marker, label)
        twin = None if same_key or forced else self._finished_twin(name, key)
        if twin is not None:
            return self._adopt(name, *twin, label)
        resume = same_key and not forced and marker["status"] == "running"
        if not resume:
            shutil.rmtree(output, ignore_errors=True)
            output.mkdir(parents=True)
        self.console.print(f"[bold cyan]{'resume' if resume else 'run'}[/]     {label or name}", highlight=False)
        started = time.time()
        self._write_marker(name, {"status": "running", "key": key, "spec": spec, "started": started})
        build(output, resume)
        seconds = time.time() - started
        output_id = uuid.uuid4().hex
        done = {"status": "done", "key": key, "spec": spec, "output_id": output_id, "started": started,
                "seconds": seconds}
        self._write_marker(name, done)
        self.console.print(f"[green]done[/]    {label or name} [dim]({seconds:.1f} s)[/]", highlight=False)
        return self._log(StageResult(name, key, output, output_id, "resumed" if resume else "ran", seconds))

    def _finished_twin(self, name: str, key: str) -> tuple[str, dict[str, Any]] | None:
        """Another stage of this run folder finished with ``key`` (its output still there) and its marker."""
        for path in sorted((self.root / "stages").glob("*.json")):
            other = path.name.removesuffix(".json")
            marker = self.read_marker(other) if other != name else None
            finished = marker is not None and marker.get("status") == "done" and self.output_path(other).is_dir()
            if finished and marker.get("key") == key:
                return other, marker
        return None

    def _adopt(self, name: str, twin: str, twin_marker: Mapping[str, Any], label: str | None) -> StageResult:
        """Stage ``name`` as a copy of the finished stage ``twin`` (same key, same ``output_id``)."""
        output = self.output_path(name)
        staging = output.with_name(f".{name}.copy-{uuid.uuid4().hex[:8]}")
        shutil.copytree(self.output_path(twin), staging)
        shutil.rmtree(output, ignore_errors=True)
        staging.rename(output)
        marker = {**twin_marker, "copied_from": twin}
        self._write_marker(name, marker)
        return self._reused(name, marker, label, f" [dim](a copy of {twin})[/]")

    def _reused(self, name: str, marker: Mapping[str, Any], label: str | None, note: str = "") -> StageResult:
        """Log and return stage ``name`` as reused, as its ``done`` marker describes it."""
        self.console.print(f"[dim]reused[/]  {label or name}{note}", highlight=False)
        return self._log(StageResult(name, marker["key"], self.output_path(name), marker["output_id"], "reused", 0.0))

    def _write_marker(self, name: str, marker: Mapping[str, Any]) -> None:
        with atomic_file(self.marker_path(name)) as handle:
            json.dump(marker, handle, indent=2, sort_keys=True)

    def _log(self, result: StageResult) -> StageResult:
        entry = {"time": time.time(), "stage": result.name, "action": result.action, "key": result.key,
                 "seconds": round(result.seconds, 3)}
        with (self.root / "stages.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        return result
