"""tm.set_num_threads / tm.get_num_threads: through threadpoolctl when it is installed, and
honestly nothing (a warning, and the environment's number) when it is not."""

import types

import pytest

import tinymed as tm
from tinymed import threads


def test_without_threadpoolctl_set_warns_and_get_reports_the_environment(monkeypatch):
    monkeypatch.setattr(threads, "threadpoolctl", None)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    with pytest.warns(RuntimeWarning, match="start Python with OMP_NUM_THREADS=1 instead"):
        tm.set_num_threads(1)
    assert tm.get_num_threads() == 3
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert tm.get_num_threads() >= 1


def test_with_threadpoolctl_the_blas_pool_is_limited_and_read(monkeypatch):
    calls = []
    fake = types.SimpleNamespace(
        threadpool_limits=lambda limits, user_api: calls.append((limits, user_api)),
        threadpool_info=lambda: [
            {"user_api": "openmp", "num_threads": 16},
            {"user_api": "blas", "num_threads": 2},
        ],
    )
    monkeypatch.setattr(threads, "threadpoolctl", fake)
    tm.set_num_threads(2)
    assert calls == [(2, "blas")] and tm.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="set_num_threads: expects a positive integer"):
        tm.set_num_threads(bad)
