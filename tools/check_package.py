"""Build the sdist and the wheel, check their contents, and smoke-test the installed wheel.

    .venv/bin/python tools/check_package.py [--keep]      # `make package-check`; `make test` runs it

1. ``python -m build``: the sdist, then the wheel built from the sdist (so the sdist is
   complete enough to build from).
2. Contents: the wheel holds every ``fastact/*.py`` of the source tree (the generated
   ``_kernels.py``, ``_functions.py`` and ``_cuda_kernels.py`` included), the license, the
   ``fastact`` entry point and the version of ``fastact/_version.py``, and nothing else (no
   tests); the sdist holds the package, pyproject.toml, README.md, LICENSE and CHANGELOG.md.
3. A clean virtual environment (no system site-packages, no pip inside; this interpreter's
   pip installs into it, from pip's cache / the configured index) gets the wheel and its
   dependencies; ``tools/package_smoke.py`` then runs there, from outside the repository, with
   NUMBA_CACHE_DIR, PYTHONPATH and FASTACT_* unset, and must print nothing on stderr:
   a. the installed package read-only (``chmod -R a-w``) and no writable home: the kernels
      work with the disk cache off (as root, file modes bind only without the capabilities
      that override them: the smoke tests run with CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and
      CAP_FOWNER dropped; root that cannot drop them skips a and b, saying so);
   b. the package read-only, a writable home: the cache goes to ``~/.cache/numba``, twice
      (compile and store, then load), and nothing is written next to the sources;
   c. the package writable: the cache goes next to the sources.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("_kernels.py", "_functions.py", "_cuda_kernels.py")
SDIST_FILES = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md")
#: capabilities that let root write read-only files (linux/capability.h): DAC_OVERRIDE,
#: DAC_READ_SEARCH, FOWNER; SETPCAP allows dropping them (prctl PR_CAPBSET_DROP)
ROOT_OVERRIDES = (1, 2, 3)
CAP_SETPCAP = 8
PR_CAPBSET_DROP = 24
STEPS: list[tuple[str, float]] = []


class Failure(Exception):
    pass


def step(name):
    def wrap(func):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            result = func(*args, **kwargs)
            STEPS.append((name, time.perf_counter() - t0))
            print(f"  {name}: ok ({STEPS[-1][1]:.1f} s)", flush=True)
            return result

        return run

    return wrap


def sh(cmd, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        command = " ".join(map(str, cmd))
        raise Failure(f"{command} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def version() -> str:
    text = (ROOT / "fastact" / "_version.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)  # type: ignore[union-attr]


@step("build sdist and wheel")
def build(dist: Path) -> tuple[Path, Path]:
    sh([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)])
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    return sdist, wheel


@step("check wheel and sdist contents")
def check_contents(sdist: Path, wheel: Path) -> None:
    v = version()
    sources = sorted(p.name for p in (ROOT / "fastact").glob("*.py"))
    assert set(GENERATED) <= set(sources), "run python -m fastact._codegen"
    if not (sdist.name == f"fastact-{v}.tar.gz" and wheel.name == f"fastact-{v}-py3-none-any.whl"):
        raise Failure(f"unexpected file names {sdist.name}, {wheel.name} for version {v}")

    names = zipfile.ZipFile(wheel).namelist()
    info = f"fastact-{v}.dist-info/"
    missing = [f"fastact/{n}" for n in sources if f"fastact/{n}" not in names]
    extra = [n for n in names if not n.startswith(("fastact/", info))]
    extra += [n for n in names if n.startswith("fastact/") and n[8:] not in sources]
    if missing or extra:
        raise Failure(f"wheel: missing {missing}, unexpected {extra}")
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(info + "METADATA").decode()
        entry = zf.read(info + "entry_points.txt").decode()
        if info + "licenses/LICENSE" not in names:
            raise Failure("wheel: no LICENSE in the dist-info")
    if f"\nVersion: {v}\n" not in meta or "\nLicense-Expression: MIT\n" not in meta:
        raise Failure(f"wheel METADATA: version or license wrong:\n{meta[:400]}")
    if "fastact = fastact.cli:main" not in entry:
        raise Failure(f"wheel: no fastact console script:\n{entry}")

    with tarfile.open(sdist) as tf:
        members = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    missing = [n for n in (*SDIST_FILES, *(f"fastact/{s}" for s in sources)) if n not in members]
    extra = sorted(n for n in members if n.startswith(("tests/", "bench/", "tools/", "docs/")))
    if missing or extra:
        raise Failure(f"sdist: missing {missing}, unexpected {extra}")


@step("clean venv + pip install the wheel")
def install(venv: Path, wheel: Path) -> Path:
    sh([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    sh([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
        "--only-binary=:all:", str(wheel)])  # fmt: skip
    return python


def _drop_root_overrides() -> None:
    """In the child, before exec: drop root's file-permission overrides from the bounding set
    (a root process's capabilities after exec are limited to it)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in ROOT_OVERRIDES:
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed (no CAP_SETPCAP?)")


def must_drop_overrides() -> bool | None:
    """True when file modes do not bind this process and it can drop what overrides them;
    False when they bind already; None when they do not and it cannot (root without
    CAP_SETPCAP): then read-only installs cannot be tested here."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status") as fh:
            caps = next(int(line.split()[1], 16) for line in fh if line.startswith("CapEff:"))
    except (OSError, StopIteration):
        return None
    if not any(caps >> cap & 1 for cap in ROOT_OVERRIDES):
        return False
    return True if caps >> CAP_SETPCAP & 1 else None


def smoke(python: Path, work: Path, home: Path, expect_cache: str, root: bool) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "NUMBA_CACHE_DIR",
                        "NUMBA_ENABLE_CUDASIM") and not k.startswith("FASTACT_")}  # fmt: skip
    env["HOME"] = str(home)
    cmd = [str(python), str(work / "package_smoke.py"), "--expect-cache", expect_cache]
    drop = _drop_root_overrides if root else None
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=work, env=env, check=False, preexec_fn=drop
    )
    if proc.returncode != 0 or proc.stderr:
        raise Failure(f"smoke test (cache {expect_cache}, HOME={home}) exited {proc.returncode}:\n"
                      f"{proc.stdout}{proc.stderr}")  # fmt: skip
    return proc.stdout.strip()


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def cache_files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.suffix in (".nbi", ".nbc")]


def set_writable(path: Path, writable: bool) -> None:
    for p in [path, *path.rglob("*")]:
        mode = p.stat().st_mode
        w = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        p.chmod(mode | stat.S_IWUSR if writable else mode & ~w)


@step("smoke test, package read-only, no writable home (cache off)")
def smoke_read_only(python: Path, work: Path, package: Path, root: bool) -> None:
    home = work / "home-none"
    home.mkdir(mode=0o555)  # read-only: ~/.cache/numba cannot be created
    before = files_under(package)
    print("   ", smoke(python, work, home, "off", root))
    if files_under(package) != before:
        raise Failure(f"files written into the read-only package: {files_under(package) - before}")


@step("smoke test x2, package read-only, writable home (cache in ~/.cache/numba)")
def smoke_user_cache(python: Path, work: Path, package: Path, root: bool) -> None:
    home = work / "home-user"
    home.mkdir()
    before = files_under(package)
    for _ in range(2):  # compile and store, then load from the cache
        print("   ", smoke(python, work, home, "on", root))
    if not cache_files(home / ".cache" / "numba"):
        raise Failure(f"no kernel cache under {home}/.cache/numba")
    if files_under(package) != before:
        raise Failure(f"files written into the read-only package: {files_under(package) - before}")


@step("smoke test, package writable (cache next to the sources)")
def smoke_writable(python: Path, work: Path, package: Path) -> None:
    home = work / "home-writable"
    home.mkdir()
    print("   ", smoke(python, work, home, "on", root=False))
    if not cache_files(package / "__pycache__"):
        raise Failure(f"no kernel cache in {package}/__pycache__")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    root = must_drop_overrides()
    work = Path(tempfile.mkdtemp(prefix="fastact-package-"))
    t0 = time.perf_counter()
    print(f"package check in {work}", flush=True)
    try:
        sdist, wheel = build(work / "dist")
        check_contents(sdist, wheel)
        python = install(work / "venv", wheel)
        shutil.copy(ROOT / "tools" / "package_smoke.py", work)
        site = sh([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        package = Path(site.stdout.strip()) / "fastact"
        if root is None:
            print("  SKIPPED the read-only installs: root without CAP_SETPCAP ignores file modes")
        else:
            set_writable(package, False)
            smoke_read_only(python, work, package, root)
            smoke_user_cache(python, work, package, root)
            set_writable(package, True)
        smoke_writable(python, work, package)
    except (Failure, AssertionError) as exc:
        print(f"package check FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            for p in work.rglob("*"):  # a non-root user needs write access to delete
                if p.is_dir() and not p.is_symlink():
                    p.chmod(p.stat().st_mode | stat.S_IWUSR)
            shutil.rmtree(work, ignore_errors=True)
    print(f"package check passed in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
