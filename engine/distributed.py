"""Process-group setup for DeepSpeed, outside its launcher.

DeepSpeed needs a torch.distributed process group even for one process. Outside the
`deepspeed` launcher we create a world of one: RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR
and a free MASTER_PORT (so concurrent workers on one machine never collide), gloo on
CPU and nccl on CUDA. Done once per process, on first use, never at import.
"""

from __future__ import annotations

import logging
import os
import socket

import torch

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_process_group(device: torch.device) -> None:
    import deepspeed
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    ours = "MASTER_PORT" not in os.environ
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    backend = "nccl" if device.type == "cuda" else "gloo"
    quiet_deepspeed()
    deepspeed.init_distributed(dist_backend=backend, verbose=False)
    log.debug("process group: %s on port %s", backend, os.environ["MASTER_PORT"])
    if ours:
        # The store now holds this port; a child process inheriting it would collide.
        del os.environ["MASTER_PORT"]


def quiet_deepspeed() -> None:
    # DeepSpeed logs its whole config at INFO for every engine; keep warnings only.
    from deepspeed.utils import logger as ds_logger

    ds_logger.setLevel(logging.WARNING)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available; use --device cpu")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
