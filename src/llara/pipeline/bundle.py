"""The folder that travels to a GPU machine: a payload split into parts that each fit one transfer.

The payload folder (prepared data, SR checkpoint, model weights, wheels) is written as one tar stream and
cut into chunks, so that every ``part-N/`` folder stays under a per-transfer limit (64 MiB on this
project's GPU machine)::

    <bundle>/part-1/payload.tar.000   chunks of the tar stream, in order
    <bundle>/part-1/bundle.json       the same manifest in every part: chunk names, sizes, sha256
    <bundle>/part-2/payload.tar.001   ...

On arrival :func:`unpack_bundle` joins the chunks of all parts present, checks the sha256 and extracts the
payload; a missing part is named in the error. :func:`install_wheels` puts the shipped wheels that the
machine lacks on a folder for ``PYTHONPATH``. This module uses the standard library only: it runs before
the wheels (pydantic among them) are installed. ``python -m llara.pipeline.bundle unpack BUNDLE`` does both.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import re
import shutil
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

MIB = 1024 * 1024
#: what one transfer to the GPU machine may carry (the working tree itself travels too: keep a margin)
TRANSFER_LIMIT = 64 * MIB
#: default size of a part: the limit less a margin for the working tree and the manifest
PART_SIZE = 60 * MIB
MANIFEST = "bundle.json"
#: bytes of a part kept for its manifest (about 100 bytes per chunk)
MANIFEST_RESERVE = 16 * 1024
CHUNK_PREFIX = "payload.tar."
PAYLOAD_DIR = "payload"
SITE_DIR = "site"
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


class BundleError(Exception):
    """A bundle that cannot be written or unpacked (a missing part, a wrong checksum, a part too large)."""


def pack_payload(payload: Path, bundle: Path, part_size: int = PART_SIZE) -> list[Path]:
    """Write ``payload`` (a folder) as tar chunks into ``bundle/part-N/`` of at most ``part_size`` bytes each
    (manifest included); return the part folders. An existing ``bundle`` is replaced."""
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir(parents=True)
    tar_path = bundle / "payload.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(payload, arcname=PAYLOAD_DIR)
    chunk_size = part_size - MANIFEST_RESERVE
    if chunk_size <= 0:
        raise BundleError(f"part size {part_size} bytes leaves no room for data")
    chunks = _split_file(tar_path, bundle, chunk_size)
    manifest = {
        "sha256": _sha256(tar_path),
        "size": tar_path.stat().st_size,
        "chunks": [{"name": path.name, "part": path.parent.name, "size": path.stat().st_size} for path in chunks],
    }
    tar_path.unlink()
    parts = sorted({path.parent for path in chunks}, key=_part_number)
    for part in parts:
        (part / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return parts


def _split_file(path: Path, bundle: Path, chunk_size: int) -> list[Path]:
    """Cut ``path`` into ``chunk_size`` pieces, one per part folder."""
    chunks = []
    with path.open("rb") as source:
        for index, block in enumerate(iter(lambda: source.read(chunk_size), b"")):
            part = bundle / f"part-{index + 1}"
            part.mkdir()
            chunk = part / f"{CHUNK_PREFIX}{index:03d}"
            chunk.write_bytes(block)
            chunks.append(chunk)
    return chunks


def part_sizes(bundle: Path) -> dict[str, int]:
    """Bytes per part folder (everything in it)."""
    return {part.name: sum(f.stat().st_size for f in part.rglob("*") if f.is_file()) for part in _parts(bundle)}


def check_part_sizes(bundle: Path, limit: int = TRANSFER_LIMIT) -> dict[str, int]:
    """The part sizes, or BundleError naming every part over ``limit`` bytes (one transfer each)."""
    sizes = part_sizes(bundle)
    if not sizes:
        raise BundleError(f"{bundle} holds no part-N folders")
    over = {name: size for name, size in sizes.items() if size > limit}
    if over:
        listed = ", ".join(f"{name} ({size / MIB:.1f} MiB)" for name, size in over.items())
        raise BundleError(f"parts over the {limit / MIB:.0f} MiB transfer limit: {listed}")
    return sizes


def unpack_bundle(bundle: Path) -> Path:
    """Join the chunks of ``bundle``'s parts, check them and extract ``bundle/payload``; return it.

    A payload already extracted from the same tar (same sha256) is reused.
    """
    manifest = _manifest(bundle)
    target = bundle / PAYLOAD_DIR
    marker = target / ".sha256"
    if marker.is_file() and marker.read_text(encoding="utf-8") == manifest["sha256"]:
        return target
    missing = [c for c in manifest["chunks"] if not (bundle / c["part"] / c["name"]).is_file()]
    if missing:
        parts = sorted({c["part"] for c in missing}, key=lambda name: int(name.split("-")[-1]))
        raise BundleError(f"{bundle} lacks {', '.join(parts)}: transfer every part before unpacking")
    joined = bundle / "payload.tar"
    digest = hashlib.sha256()
    with joined.open("wb") as out:
        for chunk in manifest["chunks"]:
            for block in _blocks(bundle / chunk["part"] / chunk["name"]):
                digest.update(block)
                out.write(block)
    if digest.hexdigest() != manifest["sha256"]:
        joined.unlink()
        raise BundleError(f"{bundle}: the joined parts do not match the manifest's sha256 (a damaged transfer?)")
    shutil.rmtree(target, ignore_errors=True)
    with tarfile.open(joined) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12 / 3.11.4
        tar.extractall(bundle, **safe)
    joined.unlink()
    marker.write_text(manifest["sha256"], encoding="utf-8")
    return target


def install_wheels(wheels: Path, site: Path) -> list[str]:
    """Unzip the wheels in ``wheels`` that fit this Python into ``site`` (for ``PYTHONPATH``), skipping
    distributions already installed; return the names unpacked."""
    import zipfile

    site.mkdir(parents=True, exist_ok=True)
    done = []
    for wheel in sorted(wheels.glob("*.whl")) if wheels.is_dir() else []:
        match = _WHEEL.match(wheel.name)
        if match is None or not _fits_this_python(match["py"], match["abi"], match["plat"]):
            continue
        if match["name"] in done or _installed(match["name"]):
            continue
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
        done.append(match["name"])
    return done


def _fits_this_python(py: str, abi: str, plat: str) -> bool:
    """Whether wheel tags suit the running CPython on Linux x86-64 (or any platform)."""
    ours = f"cp{sys.version_info.major}{sys.version_info.minor}"
    python_ok = any(tag in (ours, "py3", f"py{sys.version_info.major}{sys.version_info.minor}") for tag in py.split("."))
    abi_ok = any(tag in ("none", "abi3", ours) for tag in abi.split("."))
    plat_ok = plat == "any" or any(tag.endswith("x86_64") and "linux" in tag for tag in plat.split("."))
    return python_ok and abi_ok and plat_ok


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _manifest(bundle: Path) -> dict:
    for part in _parts(bundle):
        if (part / MANIFEST).is_file():
            return json.loads((part / MANIFEST).read_text(encoding="utf-8"))
    raise BundleError(f"{bundle} holds no part with a {MANIFEST}: is it a bundle written by scripts/gpu_repro.sh?")


def _parts(bundle: Path) -> list[Path]:
    found = bundle.glob("part-*") if bundle.is_dir() else []
    return sorted((p for p in found if p.is_dir()), key=_part_number)


def _part_number(part: Path) -> int:
    return int(part.name.split("-")[-1])


def _blocks(path: Path, size: int = 4 * MIB) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from iter(lambda: handle.read(size), b"")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for block in _blocks(path):
        digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``unpack BUNDLE``: join and extract the payload, install its wheels into ``BUNDLE/site``."""
    parser = argparse.ArgumentParser(prog="python -m llara.pipeline.bundle")
    parser.add_argument("action", choices=["unpack", "check"])
    parser.add_argument("bundle", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.action == "check":
            for name, size in check_part_sizes(args.bundle).items():
                print(f"{name}: {size / MIB:.1f} MiB")
            return 0
        payload = unpack_bundle(args.bundle)
        installed = install_wheels(payload / "wheels", args.bundle / SITE_DIR)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"payload in {payload}; wheels unpacked: {', '.join(installed) or 'none needed'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
