"""Building the base layer: debootstrap installed on demand as root, one clear line otherwise."""

import os

import pytest

from launcher import testing
from launcher.image import base_layer
from launcher.services import packages


@pytest.fixture
def dpkg_says(tmp_path, monkeypatch):
    """Make dpkg-query report `status` for every package."""

    def set_status(status: str) -> None:
        fake = tmp_path / "bin" / "dpkg-query"
        fake.parent.mkdir(exist_ok=True)
        fake.write_text(f"#!/bin/sh\nprintf '%s' '{status}'\n")
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")

    return set_status


def test_a_non_root_user_without_debootstrap_is_told_both_commands(
    dpkg_says, tmp_path, monkeypatch
):
    dpkg_says("unknown ok not-installed")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(base_layer.BaseLayerNeedsRoot) as raised:
        base_layer._debootstrap(testing.tiny_base_recipe(), tmp_path / "root", tmp_path / "log")
    message = str(raised.value)
    assert "\n" not in message
    assert "sudo apt-get update && sudo apt-get install -y debootstrap" in message
    assert "sudo -E ./tools/bazel run //launcher:build_image" in message


def test_a_non_root_user_with_debootstrap_is_told_to_build_once_as_root(
    dpkg_says, tmp_path, monkeypatch
):
    dpkg_says("install ok installed")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(base_layer.BaseLayerNeedsRoot) as raised:
        base_layer._debootstrap(testing.tiny_base_recipe(), tmp_path / "root", tmp_path / "log")
    assert str(raised.value) == (
        "building the base layer runs debootstrap, which needs root: run "
        "`sudo -E ./tools/bazel run //launcher:build_image` once on this machine (the layer is "
        "then cached for every user)"
    )


def test_root_installs_debootstrap_before_running_it(tmp_path, monkeypatch):
    asked = []

    class Stop(Exception):
        pass

    def ensure_installed(needs):
        asked.append(needs)
        raise Stop  # what happens after the install is not this test's subject

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(packages, "ensure_installed", ensure_installed)
    with pytest.raises(Stop):
        base_layer._debootstrap(testing.tiny_base_recipe(), tmp_path / "root", tmp_path / "log")
    assert asked == [{"debootstrap": "debootstrap"}]
