"""The CUDA lock matches the CPU lock: same versions of every shared package, all hashed."""

import os
import re
from pathlib import Path

from launcher.image import deps_layer

ROOT = Path(os.path.abspath(__file__)).parents[2]


def _pins(path: Path) -> dict[str, str]:
    text = path.read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s|$)", text, re.MULTILINE))
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins.items()}


def test_every_package_of_the_cpu_lock_has_the_same_version_in_the_cuda_lock():
    cpu = _pins(ROOT / deps_layer.FLAVOR_LOCKS["cpu"])
    cuda = _pins(ROOT / deps_layer.FLAVOR_LOCKS["cuda"])
    assert cuda["torch"] == cpu["torch"].split("+")[0]  # 2.13.0+cpu -> PyPI's CUDA 2.13.0
    stale = {
        name: (version, cuda.get(name))
        for name, version in cpu.items()
        if name != "torch" and cuda.get(name) != version
    }
    assert not stale, f"regenerate launcher/image/requirements-cuda.lock: {stale}"
    assert any(name.startswith("nvidia-") for name in cuda)  # the CUDA runtime wheels


def test_every_pin_of_the_cuda_lock_is_hashed():
    text = (ROOT / deps_layer.FLAVOR_LOCKS["cuda"]).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
    for block in blocks:
        if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", block):
            assert "--hash=sha256:" in block, block.splitlines()[0]
