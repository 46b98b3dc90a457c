import socket

import pytest


@pytest.fixture
def free_port() -> int:
    """A free TCP port on loopback, for torch.distributed rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
