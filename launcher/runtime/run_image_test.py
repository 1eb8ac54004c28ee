"""The daemonless runtime's unpacking and sandbox command, without a registry."""

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from launcher.image import tar_layer
from launcher.runtime import run_image


def _layer(path: Path, entries: list[tar_layer.Entry]) -> Path:
    tar_layer.write_layer(entries, path)
    return path


def _file(name: str, data: bytes, mode: int = 0o644) -> tar_layer.Entry:
    return tar_layer.Entry(name, "file", mode, data=data)


def test_chain_ids_follow_the_oci_definition():
    a = "sha256:" + "a" * 64
    b = "sha256:" + "b" * 64
    chains = run_image.chain_ids([a, b])
    assert chains[0] == a
    expected = subprocess.run(
        ["sha256sum"], input=f"{a} {b}".encode(), capture_output=True, check=True
    ).stdout.split()[0]
    assert chains[1] == "sha256:" + expected.decode()


def test_layers_apply_in_order_with_whiteouts(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    lower = _layer(
        tmp_path / "lower.tar",
        [
            tar_layer.Entry("etc", "dir", 0o755),
            _file("etc/keep", b"keep"),
            _file("etc/gone", b"gone"),
            tar_layer.Entry("opaque", "dir", 0o755),
            _file("opaque/old", b"old"),
            tar_layer.Entry("bin", "symlink", 0o777, target="usr/bin"),
        ],
    )
    upper = _layer(
        tmp_path / "upper.tar",
        [
            tar_layer.Entry("etc", "dir", 0o755),
            _file("etc/.wh.gone", b""),
            _file("etc/keep", b"newer", 0o600),
            tar_layer.Entry("opaque", "dir", 0o755),
            _file("opaque/.wh..wh..opq", b""),
            _file("opaque/new", b"new"),
        ],
    )
    run_image.apply_layer(lower, root)
    run_image.apply_layer(upper, root)
    assert (root / "etc" / "keep").read_bytes() == b"newer"
    assert (root / "etc" / "keep").stat().st_mode & 0o777 == 0o600
    assert not (root / "etc" / "gone").exists()
    assert sorted(os.listdir(root / "opaque")) == ["new"]
    assert os.readlink(root / "bin") == "usr/bin"


def test_unpacking_onto_a_hard_linked_copy_leaves_the_parent_chain_intact(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    run_image.apply_layer(
        _layer(
            tmp_path / "base.tar",
            [tar_layer.Entry("app", "dir", 0o755), _file("app/code.py", b"v1")],
        ),  # fmt: skip
        parent,
    )
    child = tmp_path / "child"
    subprocess.run(["cp", "-a", "-l", str(parent), str(child)], check=True)
    assert (child / "app" / "code.py").stat().st_ino == (parent / "app" / "code.py").stat().st_ino
    run_image.apply_layer(_layer(tmp_path / "app.tar", [_file("app/code.py", b"v2")]), child)
    assert (child / "app" / "code.py").read_bytes() == b"v2"
    assert (parent / "app" / "code.py").read_bytes() == b"v1"


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "link/escape"])
def test_members_that_would_leave_the_root_are_refused(tmp_path, name):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)  # a symlinked parent pointing outside
    layer = tmp_path / "evil.tar"
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(RuntimeError, match="refusing"):
        run_image.apply_layer(layer, root)
    assert not (tmp_path / "escape").exists()


def test_sandbox_runs_as_the_image_user_with_a_read_only_rootfs_and_the_run_root(tmp_path):
    config = {
        "config": {
            "User": "1000:1000",
            "Env": ["HOME=/home/terra", "PATH=/usr/bin"],
            "Entrypoint": ["/usr/local/bin/terra-entrypoint"],
            "WorkingDir": "/app",
        }
    }
    command = run_image.bwrap_command(
        tmp_path, config, ["nano", "run", "local"], [("/host/runs", "/app/runs", False)], gpus=0
    )
    joined = " ".join(command)
    assert "--unshare-user --uid 1000 --gid 1000" in joined
    assert f"--ro-bind {tmp_path} /" in joined
    assert "--bind /host/runs /app/runs" in joined
    assert "--tmpfs /home/terra" in joined
    assert command[-4:] == ["/usr/local/bin/terra-entrypoint", "nano", "run", "local"]
    assert "--chdir /app" in joined


def test_secrets_reach_the_job_environment_but_not_its_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "s3cr3t-value")
    config = {"config": {"Env": ["PYTHONPATH=/app"], "User": "1000:1000"}}
    env = run_image.image_environment(config, {"TERRA_LAB_CLUSTER": "local"}, ["WANDB_API_KEY"], 0)
    assert env == {
        "PYTHONPATH": "/app",
        "TERRA_LAB_CLUSTER": "local",
        "WANDB_API_KEY": "s3cr3t-value",
    }
    command = run_image.bwrap_command(tmp_path, config, [], [], gpus=0)
    assert not any("s3cr3t" in part for part in command)


def test_a_node_without_docker_or_bwrap_fails_with_one_line_and_an_exit_code(
    tmp_path, monkeypatch, capsys
):
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # neither docker nor bwrap
    exit_file = tmp_path / "exit_code"
    code = run_image.main(
        ["--registry", "http://127.0.0.1:9", "--image", "terra-lab@sha256:" + "0" * 64,
         "--cache", str(tmp_path / "cache"), "--exit-code-file", str(exit_file), "--", "true"]
    )  # fmt: skip
    assert code == run_image.MISSING_RUNTIME_EXIT_CODE == 127
    assert exit_file.read_text() == "127\n"  # what the local backend reports as FAILED
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "no Docker engine answers and bwrap is not installed on " in err
    assert "install bubblewrap (sudo apt-get install -y bubblewrap) or start Docker" in err
