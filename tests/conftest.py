"""Shared test set-up.

Numba reads NUMBA_ENABLE_CUDASIM once, when it is first imported, so it is set here, before
any test module imports tinymed (and through it numba): on a machine with no GPU the Numba
kernels then run in Numba's CUDA simulator on NumPy arrays. On a GPU machine the real GPU
is used; set NUMBA_ENABLE_CUDASIM=1 yourself to force the simulator there."""

import functools
import http.server
import os
import shutil
import threading

import pytest

if not (os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi")):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


@pytest.fixture(scope="session")  # hypothesis refuses function-scoped fixtures
def torch():
    """PyTorch, the test oracle; a test that asks for it is skipped, saying why, where it is absent."""
    return pytest.importorskip(
        "torch", reason="PyTorch is the test oracle; install its CPU build (see the README) to run this comparison"
    )


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request to the test output."""

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/served on 127.0.0.1; yields (base URL, served directory)."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()
    thread.join()
