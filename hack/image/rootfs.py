"""Assemble the final image's root filesystem: only what the operator runs with.

Run in the image's build stage by the base image's own Python, after /opt/flowreg is
installed: copies into DEST the interpreter, its standard library (minus test suites, IDLE,
tkinter, ensurepip), the virtualenv, every shared library any of their ELF files loads (ldd's
closure, with the dynamic loader), the CA bundle, and passwd/group entries for UID 10001.
Symlinks on the way (merged /usr, python3 -> python3.11) are recreated as symlinks. No shell,
no package manager, no coreutils: the result is a FROM-scratch image's whole content.
Usage: python3 rootfs.py DEST VENV
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

SKIP_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
               "pydoc_data", "__phello__", "site-packages", "dist-packages"}
ETC = ("/etc/ssl/certs/ca-certificates.crt", "/etc/nsswitch.conf", "/etc/localtime",
       "/etc/ld.so.cache")  # the loader's index: finds libraries outside its default paths
# (libpython in /usr/local/lib on python:*-slim bases)


def copy(path: str, dest: Path) -> None:
    """Copy ``path`` into ``dest`` at the same place, recreating symlinked components."""
    current = Path("/")
    parts = Path(path).parts[1:]
    for i, part in enumerate(parts):
        current = current / part
        target = dest / current.relative_to("/")
        if current.is_symlink():
            if not target.is_symlink() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(os.readlink(current))
            rest = Path(*parts[i + 1:]) if i + 1 < len(parts) else None
            resolved = (current.parent / os.readlink(current)).resolve()
            copy(str(resolved / rest) if rest else str(resolved), dest)
            return
    target = dest / current.relative_to("/")
    if current.is_dir():
        shutil.copytree(current, target, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*SKIP_STDLIB) if is_stdlib(current)
                        else None)
    elif not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(current, target)


def is_stdlib(path: Path) -> bool:
    return str(path) == sysconfig.get_paths()["stdlib"]


def elf_files(roots: list[Path]) -> list[Path]:
    found = []
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                with path.open("rb") as fh:
                    if fh.read(4) == b"\x7fELF":
                        found.append(path)
    return found


def libraries(files: list[Path]) -> set[str]:
    """The shared libraries ``files`` load, by ldd (transitively: ldd resolves the closure;
    a libpython the interpreter links to is among them)."""
    needed: set[str] = set()
    for path in files:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        if "not found" in out:
            sys.exit(f"rootfs: {path} needs a library the base image lacks:\n{out}")
        needed.update(re.findall(r"(/\S+) \(0x", out))
    return needed


def main() -> None:
    dest, venv = Path(sys.argv[1]), Path(sys.argv[2])
    interpreter = Path(sys.executable)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload"
    for path in (str(interpreter), str(stdlib), str(venv)):
        copy(path, dest)
    files = elf_files([interpreter.resolve(), dynload if dynload.exists() else stdlib, venv])
    for library in sorted(libraries(files)):
        copy(library, dest)
    for path in ETC:
        if Path(path).exists():
            copy(path, dest)
    etc = dest / "etc"
    (etc / "passwd").write_text("root:x:0:0::/root:/sbin/nologin\n"
                                "flowreg:x:10001:10001::/tmp:/sbin/nologin\n")
    (etc / "group").write_text("root:x:0:\nflowreg:x:10001:\n")
    (dest / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (dest / "tmp").chmod(0o1777)


if __name__ == "__main__":
    main()
