"""pytest-benchmark tables of `Backend.step` and the read-in floor (bench_step.py has the why).

    pytest bench/bench_step_tables.py --benchmark-enable

Apart from bench_step.py so that the script runs without the test extra (pytest, pytest-benchmark).
"""

import contextlib

import pytest
from bench_step import (
    DEFAULT_LATENT,
    NEURONS,
    backend_options,
    blas_threads,
    build_artifact,
    inputs,
    read_in_matvec,
)

from stream_decoder.runtime import open_backend


@pytest.fixture(scope="module", params=NEURONS, ids=lambda n: f"N{n}")
def artifact(request, tmp_path_factory):
    return request.param, build_artifact(tmp_path_factory.mktemp(f"bench{request.param}"), request.param)


@pytest.mark.parametrize("label", list(backend_options()))
def test_step(benchmark, artifact, label):
    n, folder = artifact
    kind, options = backend_options()[label]
    backend = open_backend(folder, kind, **options)
    backend.warmup()
    activity, behavior = inputs(n)
    frame = benchmark(backend.step, activity[0], behavior[0])
    assert frame.shape == (36, 64)


@pytest.mark.parametrize("threads", ["numpy", "1"])
def test_floor(benchmark, artifact, threads):
    n, folder = artifact
    activity, behavior = inputs(n)
    with blas_threads(1) if threads == "1" else contextlib.nullcontext(True) as controlled:
        if not controlled:
            pytest.skip("numpy's OpenBLAS thread control not found")
        latent = benchmark(read_in_matvec(folder), activity[0], behavior[0])
    assert latent.shape == (DEFAULT_LATENT,)
