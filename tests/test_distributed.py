"""Two CPU processes (gloo, torchrun) against one: the same counts, the loss scale, CLID-MU's meta network (identical
state on every process for every method: test_method_contract.py)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")


def run_worker(tmp_path, name, method, frozen, per_device, processes, extra=None):
    out = tmp_path / name
    out.mkdir()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _free_port()]
    command = (launcher if processes == 2 else [sys.executable]) + [
        WORKER, str(out), method, "1" if frozen else "0", str(per_device), json.dumps(extra or {})
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(processes)]


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.mark.parametrize("method", ["none"])
def test_two_processes_match_one_with_a_frozen_model(tmp_path, method):
    (single,) = run_worker(tmp_path, "one", method, frozen=True, per_device=8, processes=1)
    ranks = run_worker(tmp_path, "two", method, frozen=True, per_device=4, processes=2)
    assert ranks[0]["world_size"] == 2
    for rank in ranks:
        assert rank["tracker"]["wrong_events"] == single["tracker"]["wrong_events"]
        assert rank["report"] == single["report"]
    # The loss is not doubled under DDP (the average_tokens_across_devices trap). Each epoch's last step differs
    # by design: 45 samples leave a partial batch that the distributed sampler pads with repeated samples.
    steps_per_epoch = 6
    full_steps = [i for i in range(len(single["losses"])) if (i + 1) % steps_per_epoch]
    np.testing.assert_allclose(
        np.asarray(ranks[0]["losses"])[full_steps], np.asarray(single["losses"])[full_steps], atol=1e-5
    )
    assert sum(single["tracker"]["wrong_events"]) > 0


def test_clid_mu_meta_network_learns_identically_on_both_processes(tmp_path):
    extra = {"clid_meta_set_size": 16, "clid_meta_batch_size": 8, "clid_scope": "last_k"}
    ranks = run_worker(tmp_path, "two", "clid_mu", frozen=False, per_device=4, processes=2, extra=extra)
    from hf_lnl.methods.clid_mu import MetaWeightNet

    initial = {f"meta_net.{n}": p.detach().numpy() for n, p in MetaWeightNet(100, seed=0).named_parameters()}
    for name, start in initial.items():  # its gradients are averaged across processes by hand
        learned = np.asarray(ranks[0]["method"][name], dtype=np.float32).reshape(start.shape)
        assert not np.array_equal(learned, start), name
        assert ranks[1]["method"][name] == ranks[0]["method"][name], name
    assert all(np.isfinite(ranks[0]["report"]["meta_weight"]))
