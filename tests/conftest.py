"""Shared fixtures: an isolated cache folder for every test, tiny supernets, small datasets."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def nat_gym_cache(tmp_path_factory, monkeypatch):
    """Every test writes nat-gym's cache (default supernets) into a fresh temp folder, never the user's."""
    cache = tmp_path_factory.mktemp("nat_gym_cache")
    monkeypatch.setenv("NAT_GYM_CACHE", str(cache))
    return cache


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Run torch on one thread for the whole session: the tests' tiny models are faster that way, and a busy
    2-core machine makes two OpenMP threads spin against each other (10x slower, measured)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_supernet_config():
    """A tiny NAT++ supernet configuration for 1-channel 8x8 images with 10 classes (fast on a CPU)."""
    from nat_gym.supernet.config import SupernetConfig

    return SupernetConfig(C=4, layers=3, steps=4, num_classes=10, in_channels=1)


@pytest.fixture
def tiny_supernet(tiny_supernet_config):
    """A random-init tiny NAT++ supernet (seeded)."""
    import torch

    from nat_gym.supernet.model import Supernet

    torch.manual_seed(0)
    return Supernet(tiny_supernet_config)


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then closed): the address of a Ray cluster that is not there."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def fake_data():
    """The synthetic ``fake`` dataset, small: 64 train / 32 valid / 16 test images of 1 x 8 x 8, 10 classes."""
    from nat_gym.data import load_dataset

    return load_dataset("fake", seed=0, n_train=64, n_valid=32, n_test=16)


@pytest.fixture(scope="session")
def digits_data():
    """The embedded ``digits`` dataset (8 x 8, 1 channel, 10 classes; 360 validation images)."""
    from nat_gym.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="module")
def shared_tiny_supernet(tiny_supernet_config_module):
    """A tiny NAT++ supernet shared by the tests of one module: read-only (never train it or load into it)."""
    import torch

    from nat_gym.supernet.model import Supernet

    torch.manual_seed(0)
    return Supernet(tiny_supernet_config_module)


@pytest.fixture(scope="module")
def tiny_supernet_config_module():
    from nat_gym.supernet.config import SupernetConfig

    return SupernetConfig(C=4, layers=3, steps=4, num_classes=10, in_channels=1)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A random-init tiny NAT++ supernet checkpoint (C=4, 3 cells) for 1-channel images with 10 classes."""
    import torch

    from nat_gym import rules
    from nat_gym.supernet.checkpoint import save_checkpoint
    from nat_gym.supernet.config import SupernetConfig
    from nat_gym.supernet.model import Supernet

    torch.manual_seed(0)
    net = Supernet(SupernetConfig(C=4, layers=3, ops=rules.get("nat++").ops, num_classes=10, in_channels=1))
    return str(save_checkpoint(tmp_path_factory.mktemp("supernet") / "tiny.pt", net))


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray with 2 CPUs for the whole session (Ray's tests: a pool joins it instead of starting its own);
    skips where the extra ``ray`` is not installed.

    It is started as :func:`nat_gym.distributed.connect` starts one, but with ``log_to_driver=False``: it lives on
    through every later test module, and Ray streams its processes' output (a worker's print, the raylet's "over 95%
    full" disk warning) to this process's ``sys.stderr`` at any moment, into whatever a later test captures there."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        yield ray
        return
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield ray
    ray.shutdown()
