"""clusters.yaml: the repository's file loads, and mistakes are errors that name the key."""

from pathlib import Path

import pytest
import yaml

from launcher import clusters

REPO_FILE = Path(__file__).with_name("clusters.yaml")


def _document() -> dict:
    return yaml.safe_load(REPO_FILE.read_text())


def test_the_repository_file_defines_local_and_slurm(tmp_path):
    settings = clusters.parse(_document(), tmp_path)
    local, slurm = settings.cluster("local"), settings.cluster("slurm")
    assert (local.backend, slurm.backend) == ("local", "slurm")
    assert local.registry.embedded and local.registry.url == "http://127.0.0.1:5000"
    assert local.run_root == tmp_path / "runs"
    assert "WANDB_API_KEY" in slurm.secrets
    assert slurm.slurm_conf == clusters.cache_root() / "services" / "slurm" / "slurm.conf"
    assert slurm.priority_args("low") == ["--nice=300"]
    assert slurm.priority_args(None) == slurm.priority_args("normal")


def test_an_unknown_cluster_lists_the_known_ones(tmp_path):
    settings = clusters.parse(_document(), tmp_path)
    with pytest.raises(clusters.ClusterConfigError, match="unknown cluster 'gpu9'.*local, slurm"):
        settings.cluster("gpu9")


def test_an_unknown_key_is_an_error_naming_it(tmp_path):
    document = _document()
    document["clusters"]["local"]["num_gpu"] = 8
    with pytest.raises(clusters.ClusterConfigError, match=r"clusters.local: unknown key.*num_gpu"):
        clusters.parse(document, tmp_path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("backend", "kubernetes", "backend must be one of local, slurm"),
        ("runtime", "podman", "runtime must be one of auto, docker, bwrap"),
        ("image_flavor", "rocm", "image_flavor must be one of cpu, cuda"),
        ("registry", "dockerhub", "registry must name an entry of registries"),
    ],
)
def test_invalid_values_name_the_field_and_the_allowed_values(tmp_path, key, value, message):
    document = _document()
    document["clusters"]["slurm"][key] = value
    with pytest.raises(clusters.ClusterConfigError, match=message):
        clusters.parse(document, tmp_path)


def test_an_unknown_priority_is_refused_where_levels_are_configured(tmp_path):
    settings = clusters.parse(_document(), tmp_path)
    with pytest.raises(clusters.ClusterConfigError, match="priority must be one of low"):
        settings.cluster("slurm").priority_args("asap")
    assert settings.cluster("local").priority_args("normal") == []  # no scheduler, no levels


def test_paths_expand_environment_variables_and_reject_unknown_ones(tmp_path, monkeypatch):
    document = _document()
    monkeypatch.setenv("SCRATCH", "/scratch/me")
    document["clusters"]["local"]["run_root"] = "${env:SCRATCH}/runs"
    assert clusters.parse(document, tmp_path).cluster("local").run_root == Path("/scratch/me/runs")
    document["clusters"]["local"]["run_root"] = "${home}/runs"
    with pytest.raises(clusters.ClusterConfigError, match=r"unknown variable \$\{home\}"):
        clusters.parse(document, tmp_path)


def test_the_gpu_template_is_a_slurm_cluster_of_8_gpu_nodes_on_the_cuda_image(tmp_path):
    gpu = clusters.parse(_document(), tmp_path).cluster("gpu")
    assert (gpu.backend, gpu.image_flavor, gpu.gpus_per_node) == ("slurm", "cuda", 8)
    # A template of a site's cluster: nothing is started here, nothing is embedded.
    assert gpu.services == () and not gpu.registry.embedded
    assert gpu.registry.url.startswith("https://")
    assert gpu.slurm_conf == Path("/etc/slurm/slurm.conf")
    assert dict(gpu.env)["NCCL_DEBUG"] == "WARN"
    assert "WANDB_API_KEY" in gpu.secrets


def test_a_cluster_env_is_a_mapping_of_names_to_text(tmp_path):
    document = _document()
    document["clusters"]["local"]["env"] = {"NCCL_DEBUG": "INFO", "NCCL_IB_DISABLE": 1}
    local = clusters.parse(document, tmp_path).cluster("local")
    assert local.env == (("NCCL_DEBUG", "INFO"), ("NCCL_IB_DISABLE", "1"))
    assert clusters.parse(_document(), tmp_path).cluster("slurm").env == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (["NCCL_DEBUG=WARN"], r"clusters.slurm.env must be a mapping of variable names"),
        ({"NCCL-DEBUG": "WARN"}, r"clusters.slurm.env: 'NCCL-DEBUG' is not a variable name"),
        ({"TERRA_RUN_ROOT": "/x"}, r"TERRA_RUN_ROOT is set by the launcher"),
        ({"WANDB_API_KEY": "abc"}, r"WANDB_API_KEY is also a secret"),
        ({"NCCL_IB_DISABLE": True}, r"clusters.slurm.env.NCCL_IB_DISABLE must be a string or a "),
        ({"NCCL_DEBUG": None}, r"clusters.slurm.env.NCCL_DEBUG must be a string or a number"),
        ({"NCCL_IB_HCA": ["mlx5"]}, r"clusters.slurm.env.NCCL_IB_HCA must be a string or a "),
    ],
    ids=["list", "bad-name", "reserved", "secret", "yaml-boolean", "null", "list-value"],
)
def test_a_bad_cluster_env_is_an_error_naming_the_variable(tmp_path, env, message):
    document = _document()
    document["clusters"]["slurm"]["env"] = env
    with pytest.raises(clusters.ClusterConfigError, match=message):
        clusters.parse(document, tmp_path)
