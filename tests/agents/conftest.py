import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Tiny MLPs on a shared 2-core machine: more threads only add contention.
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def surrogate_available() -> bool:
    try:
        import exposure_env.surrogate  # noqa: F401
    except ImportError:
        return False
    return True
