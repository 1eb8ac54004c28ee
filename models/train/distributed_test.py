"""Tests for torchrun environment parsing and the rank-collective helpers (gloo on CPU)."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from models.train import distributed


def test_environment_without_torchrun_variables_is_a_single_main_process() -> None:
    env = distributed.DistributedEnv.from_environ({})
    assert (env.rank, env.world_size, env.local_rank) == (0, 1, 0)
    assert env.is_main and not env.is_distributed


def test_torchrun_variables_are_read() -> None:
    env = distributed.DistributedEnv.from_environ(
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    )
    assert (env.rank, env.world_size, env.local_rank) == (3, 4, 1)
    assert not env.is_main and env.is_distributed


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"RANK": "2", "WORLD_SIZE": "2"}, "rank"),
        ({"WORLD_SIZE": "0"}, "world_size"),
        ({"RANK": "x"}, "integers"),
    ],
)
def test_inconsistent_torchrun_variables_are_rejected(environ: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        distributed.DistributedEnv.from_environ(environ)


def test_single_process_collectives_are_identities() -> None:
    values = torch.tensor([1.0, 2.0])
    mean = distributed.all_reduce_mean(values)
    assert torch.equal(mean, values) and mean is not values
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    assert distributed.broadcast_object(5) == 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, results: "mp.Queue") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    env = distributed.DistributedEnv(rank=rank, world_size=2, local_rank=rank)
    distributed.init_process_group(env, torch.device("cpu"), timeout_s=60)
    try:
        mean = distributed.all_reduce_mean(torch.tensor([float(rank), 10.0 * rank]))
        total = distributed.all_reduce_sum(torch.tensor([rank + 1]))
        gathered = distributed.all_gather_object(f"rank{rank}")
        broadcast = distributed.broadcast_object(f"from{rank}", src=1)
        results.put((rank, mean.tolist(), total.item(), gathered, broadcast))
    finally:
        distributed.destroy_process_group()


def test_two_gloo_processes_agree_on_means_sums_and_objects() -> None:
    context = mp.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    processes = [context.Process(target=_worker, args=(rank, port, results)) for rank in range(2)]
    for process in processes:
        process.start()
    outputs = sorted(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    for _, mean, total, gathered, broadcast in outputs:
        assert mean == [0.5, 5.0]
        assert total == 3
        assert gathered == ["rank0", "rank1"]
        assert broadcast == "from1"
