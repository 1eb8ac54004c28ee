"""Image assembly on a throwaway repo and a one-wheel lock: digests, layer order, config."""

import json
import shutil
import subprocess

import pytest

from launcher import testing
from launcher.image import build, deps_layer, oci

LOCK = "third_party/python/requirements.lock"


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wheels")
    testing.make_wheel(directory)
    return directory


@pytest.fixture
def repo(tmp_path, wheel_dir):
    wheel = next(wheel_dir.glob("tinypkg-1.0-*.whl"))
    files = {
        "experiments/nano.py": "print('nano')\n",
        "experiments/base.py": "print('base')\n",
        "models/__init__.py": "",
        LOCK: testing.lock_for(wheel),
    }
    return testing.make_repo(tmp_path / "origin", files)


def _build(repo, cache_dir, wheel_dir, revision="HEAD"):
    recipe = testing.tiny_base_recipe()
    testing.seed_tiny_base(cache_dir, recipe)
    return build.build_image(
        repo,
        revision=revision,
        source_url="https://example.com/terra-lab",
        base_recipe=recipe,
        cache_dir=cache_dir,
        pip_args=["--no-index", "--find-links", str(wheel_dir)],
    )


def test_two_fresh_clones_at_one_commit_give_the_same_image_digest(repo, tmp_path, wheel_dir):
    # Separate caches: each clone installs and archives the dependency layer from scratch.
    first = _build(testing.clone(repo, tmp_path / "a"), tmp_path / "cache-a", wheel_dir)
    second = _build(testing.clone(repo, tmp_path / "b"), tmp_path / "cache-b", wheel_dir)
    assert first.manifest_digest == second.manifest_digest
    assert [layer.digest for layer in first.layers] == [layer.digest for layer in second.layers]
    assert first.manifest_bytes == second.manifest_bytes


def test_editing_one_experiment_changes_only_the_application_layer(repo, tmp_path, wheel_dir):
    cache = tmp_path / "cache"
    before = _build(repo, cache, wheel_dir)
    (repo / "experiments" / "nano.py").write_text("print('nano, lr 3e-4')\n")
    testing.commit_all(repo, "tune nano")
    after = _build(repo, cache, wheel_dir)
    assert [layer.name for layer in after.layers] == ["base", "deps", "app"]
    assert after.layers[0].digest == before.layers[0].digest
    assert after.layers[1].digest == before.layers[1].digest
    assert after.layers[1].from_cache
    assert after.layers[2].digest != before.layers[2].digest
    assert after.manifest_digest != before.manifest_digest


def test_dependency_layer_holds_the_locked_package_with_bytecode_and_a_fixed_shebang(
    repo, tmp_path, wheel_dir
):
    image = _build(repo, tmp_path / "cache", wheel_dir)
    members = testing.layer_members(image.store, image.layers[1].digest)
    site = deps_layer.SITE_PACKAGES
    assert f"{site}/tinypkg/__init__.py" in members
    assert f"{site}/tinypkg/__pycache__/__init__.cpython-311.pyc" in members
    assert members[f"{site}/bin/tinypkg"].startswith(b"#!/usr/bin/python3\n")


def test_config_is_reproducible_and_names_commit_lock_and_user(repo, tmp_path, wheel_dir):
    image = _build(repo, tmp_path / "cache", wheel_dir)
    config = json.loads(image.store.read(image.config_digest))
    commit = testing.git(repo, "rev-parse", "HEAD")
    lock_text = (repo / LOCK).read_text()
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == commit
    assert labels["org.opencontainers.image.source"] == "https://example.com/terra-lab"
    assert labels["dev.terra-lab.lock.sha256"] == oci.sha256_digest(lock_text.encode())
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"]["User"] == "1000:1000"
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/terra-entrypoint"]
    assert config["rootfs"]["diff_ids"] == [layer.digest for layer in image.layers]
    assert image.tag == commit


def test_a_lock_change_changes_the_dependency_layer_not_the_base(repo, tmp_path, wheel_dir):
    cache = tmp_path / "cache"
    before = _build(repo, cache, wheel_dir)
    newer = testing.make_wheel(wheel_dir, version="1.1")
    (repo / LOCK).write_text(testing.lock_for(newer, version="1.1"))
    testing.commit_all(repo, "bump tinypkg")
    after = _build(repo, cache, wheel_dir)
    assert after.layers[0].digest == before.layers[0].digest
    assert after.layers[1].digest != before.layers[1].digest
    assert not after.layers[1].from_cache


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_reads_the_oci_layout(repo, tmp_path, wheel_dir):
    image = _build(repo, tmp_path / "cache", wheel_dir)
    result = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{image.store.root}:{image.tag}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert oci.sha256_digest(result.stdout.encode()) == image.manifest_digest
