import pytest
import torch
from threadpoolctl import threadpool_info

from streamer.errors import ConfigError
from streamer.pipeline import PipelineOptions, build_engine


def test_one_thread_means_one_thread_everywhere():
    """Not just torch: numpy's BLAS pool would spin a second core between the mel products."""
    build_engine(PipelineOptions(threads=1))
    assert torch.get_num_threads() == 1
    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    assert pools and all(p["num_threads"] == 1 for p in pools)


def test_zero_threads_is_refused():
    with pytest.raises(ConfigError, match="threads must be at least 1"):
        build_engine(PipelineOptions(threads=0))
