# Copyright (c) The proscale Authors. All rights reserved.
"""Temporarily run torch on a given number of CPU threads."""
from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def torch_threads(num_threads: int = 1) -> Iterator[None]:
    """Run torch on ``num_threads`` intra-op threads inside the block.

    Tiny workloads (the exit gate, the test suite's models) gain nothing
    from threads, and on a busy machine the thread hand-offs slow them down
    many times over.

    Args:
        num_threads (int): Threads inside the block. Defaults to 1.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
