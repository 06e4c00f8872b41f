"""dbrepro: reproduce Range Loss (ICCV 2017) and Domain Balancing (CVPR 2020) on long-tailed faces."""

import os

__version__ = "0.1.0"

#: Environment for fast CPU training that does not collapse when the machine is busy. PyTorch's OpenMP
#: threads spin while they wait; on a 2-core machine with any other process running, a 2-thread job then
#: runs several times slower than a 1-thread one. Passive waiting keeps 2 threads at least as fast as 1
#: (``benchmarks/bench_threads.py``). It must be set before torch loads its OpenMP runtime: the book's
#: executor sets it for every kernel, the Makefile for every target, and importing dbrepro before torch
#: sets it for the process unless the user chose otherwise.
CPU_THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}

for _key, _value in CPU_THREAD_ENV.items():
    os.environ.setdefault(_key, _value)
