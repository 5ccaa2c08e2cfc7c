"""infra/Dockerfile: Ray 2.60 and constraints.txt, Numba's cache warmed where workers read it, a CPU
and a GPU variant, a small build context; and (slow) the CPU image built and run on this machine.

No container registry is reachable here, so the slow test builds on a stand-in for the Ray base
image: Debian's own packages (mmdebstrap) laid out as rayproject/ray lays itself out (user `ray`,
uid 1000, a Python 3.11 environment first on PATH at /home/ray/anaconda3). Everything after
`FROM` is the real Dockerfile: pip installs Ray and the project from PyPI, torch from the index
the build argument names (a local one made from a wheel on disk, where there is one).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "infra" / "Dockerfile"


def _pins() -> dict:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return dict(ln.split("==") for ln in lines if "==" in ln and not ln.startswith("#"))


def _instructions() -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _arg(name: str) -> str:
    return next(i.split("=", 1)[1] for i in _instructions() if i.startswith(f"ARG {name}="))


def test_ray_version_and_variants():
    import ray

    assert _arg("RAY_VERSION") == _pins()["ray"] == ray.__version__
    assert _arg("BASE_IMAGE") == "rayproject/ray:${RAY_VERSION}-py311-${VARIANT}"
    assert _arg("VARIANT") == "cpu"  # the GPU variant: VARIANT=cu128, base and torch index alike
    assert _arg("TORCH_INDEX") == "https://download.pytorch.org/whl/${VARIANT}"


def test_installs_with_constraints_and_warms_numba_where_workers_read():
    ins = _instructions()
    env = next(i for i, s in enumerate(ins) if s.startswith("ENV NUMBA_CACHE_DIR="))
    warm = next(i for i, s in enumerate(ins) if "_warm_up()" in s)
    assert env < warm  # the warm-up writes the cache that workers read
    run = ins[warm]
    assert "pip install" in run and "-c /tmp/aurorahash/constraints.txt" in run
    assert '"ray==${RAY_VERSION}"' in run
    # the warm-up compiles the installed modules, not the copied sources (cache keyed by path)
    assert run.index("rm -rf /tmp/aurorahash") < run.index("cd / && python")
    assert ins[-1] == "USER ray"


def test_dockerignore_admits_exactly_what_the_image_copies():
    copied = set()
    for ins in _instructions():
        if ins.startswith("COPY "):
            copied |= {p.rstrip("/") for p in ins.split()[1:-1] if not p.startswith("--")}
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*"  # everything else (.venv, runs/, data, caches) stays out
    assert {p[1:].rstrip("/") for p in patterns if p.startswith("!")} == copied
    assert {"**/__pycache__", "**/*.nbi", "**/*.nbc"} <= set(patterns)


# ----------------------------------------------------------------------- the image, built here

BUILDER = shutil.which("buildah")
BOOTSTRAP = shutil.which("mmdebstrap")
# chroot isolation: this machine's OCI runtime cannot run containers (hybrid cgroups, no
# CAP_SYS_RESOURCE for its rlimits); buildah's chroot isolation needs neither.
RUN = ["--isolation", "chroot"]
BASE_HOOKS = [
    'chroot "$1" useradd --uid 1000 --gid 100 --create-home ray',
    'chroot "$1" python3 -m venv /home/ray/anaconda3',
    'chroot "$1" chown -R ray:users /home/ray',
]
BASE_PATH = "/home/ray/anaconda3/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sh(*cmd, timeout=1200, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        pytest.fail(f"{' '.join(cmd[:3])} ... exited {p.returncode}:\n{p.stderr[-3000:]}")
    return p


def _stand_in_base(workdir: Path) -> str:
    """A local image laid out like rayproject/ray's Python 3.11 images; kept between runs."""
    recipe = "\n".join(["bookworm", "python3,python3-venv,ca-certificates", *BASE_HOOKS, BASE_PATH])
    tag = f"localhost/aurorahash-test-base:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if _sh(BUILDER, "inspect", "--type", "image", tag, check=False).returncode == 0:
        return tag
    tar = workdir / "base.tar"
    hooks = [f"--customize-hook={h}" for h in BASE_HOOKS]
    _sh(
        BOOTSTRAP,
        "--variant=minbase",
        "--include=python3,python3-venv,ca-certificates",
        *hooks,
        "bookworm",
        str(tar),
        "http://deb.debian.org/debian",
    )
    ctr = _sh(BUILDER, "from", "scratch").stdout.strip()
    try:
        _sh(BUILDER, "add", ctr, str(tar), "/")
        _sh(BUILDER, "config", "--env", f"PATH={BASE_PATH}", "--user", "ray", ctr)
        _sh(BUILDER, "config", "--workingdir", "/home/ray", ctr)
        _sh(BUILDER, "commit", ctr, tag)
    finally:
        _sh(BUILDER, "rm", ctr, check=False)
    tar.unlink()
    return tag


def _local_torch_wheel() -> Path | None:
    """The CPU torch wheel of the pinned version for Python 3.11, if pip's find-links has it."""
    p = _sh(sys.executable, "-m", "pip", "config", "list", check=False)
    dirs = re.findall(r"find-links='([^']+)'", p.stdout) + [os.environ.get("PIP_FIND_LINKS", "")]
    name = f"torch-{_pins()['torch']}+cpu-cp311-cp311-*.whl"
    for d in {x for ds in dirs for x in ds.split() if x}:
        hits = sorted(Path(d.removeprefix("file://")).glob(name))
        if hits:
            return hits[-1]
    return None


def _torch_index(workdir: Path, wheel: Path) -> Path:
    """A one-package index (PEP 503 layout) for pip's --extra-index-url file:///torch-index."""
    d = workdir / "torch-index" / "torch"
    d.mkdir(parents=True)
    try:
        os.link(wheel, d / wheel.name)
    except OSError:
        shutil.copy(wheel, d / wheel.name)
    href = wheel.name.replace("+", "%2B")
    (d / "index.html").write_text(f'<html><body><a href="{href}">{wheel.name}</a></body></html>\n')
    return d.parent


def _ca_bundle() -> str | None:
    """This machine's CA bundle, for pip inside the build (TLS may be inspected on the way)."""
    for cand in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE")):
        if cand and Path(cand).is_file():
            return cand
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return str(default) if default.is_file() else None


@pytest.mark.slow
@pytest.mark.timeout(3000)
@pytest.mark.skipif(
    not (BUILDER and BOOTSTRAP),
    reason="no OCI image builder: apt-get install buildah mmdebstrap",
)
def test_cpu_image_builds_and_runs_aurorahash(tmp_path):
    base = _stand_in_base(tmp_path)
    tag = f"localhost/aurorahash-test:{os.getpid()}"
    args = ["--build-arg", f"BASE_IMAGE={base}", "--network", "host"]
    wheel = _local_torch_wheel()
    if wheel is not None:
        index = _torch_index(tmp_path, wheel)
        args += ["-v", f"{index}:/torch-index:ro", "--build-arg", "TORCH_INDEX=file:///torch-index"]
    ca = _ca_bundle()
    if ca:
        args += ["-v", f"{ca}:/etc/ssl/certs/ca-certificates.crt:ro"]
    _sh(BUILDER, "build", *RUN, *args, "-f", str(DOCKERFILE), "-t", tag, str(REPO), timeout=2400)
    ctr = _sh(BUILDER, "from", tag).stdout.strip()
    try:

        def run(script: str, **env) -> str:
            envs = [f"--env={k}={v}" for k, v in env.items()]
            return _sh(BUILDER, "run", *RUN, *envs, ctr, "--", "sh", "-c", script).stdout

        assert "ingest" in run("aurorahash --help")
        assert "--s3-endpoint" in run("aurorahash ingest --help")
        versions = run(
            "id -u; python -c 'import ray, torch; print(ray.__version__, torch.__version__)'"
        )
        uid, ray_v, torch_v = versions.split()
        assert uid == "1000" and ray_v == _pins()["ray"]
        assert torch_v == f"{_pins()['torch']}+cpu"  # the CPU variant took the CPU wheel
        assert run("ls /tmp/aurorahash 2>/dev/null; echo done").strip() == "done"
        listing = 'find "$NUMBA_CACHE_DIR" -type f | sort'
        cached = run(listing).split()
        assert any("knn" in f for f in cached) and any(f.endswith(".nbc") for f in cached)
        # A search worker's warm-up, as the image's user, loads every kernel from the cache.
        log = run(
            'cd /tmp && python -c "from pipeline.codes.search import _warm_up; _warm_up()"',
            NUMBA_DEBUG_CACHE="1",
        )
        assert "data loaded" in log and "data saved" not in log, log[-2000:]
        assert run(listing).split() == cached
    finally:
        _sh(BUILDER, "rm", ctr, check=False)
        _sh(BUILDER, "rmi", tag, check=False)
