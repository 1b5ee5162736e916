"""The training engine: everything about one run, and the cache of finished runs.

It knows nothing about claims. Modules, leaves first (no module imports one that imports it;
tests/engine/test_imports.py checks the graph):

- `paths` where things live on disk (cache, `<cache>/_data`); `atomic` the one atomic file
  writer; `faults` kill points for the fault tests; `runtime` device, process group, autocast,
  CPU threads; `options` the options the CLI shares with the pytest plugin; `precision` fp32
  or bf16 autocast, and compilation; `identity` a run's data and numeric environment beyond
  its spec; `compilation` what torch.compile did for a run, with no silent eager fallback;
  `claims` which driver is computing a run, so two sweeps on one cache train it once;
- `source` data-source strings parsed into a value; `spec` the frozen RunSpec (identity, bits);
  `ladder` the size registry; `schedule` LR/momentum schedules; `design` profiles as data;
- `quant` fake quantisation and export; `model` the GPT; `muon`, `optim` optimisers;
- `tokenizer`, `bpb`, `data` tokenizers, bits per byte, corpora and batches; `fineweb`
  parameter-golf's FineWeb shards and tokenizer, fetched and checked; `evaluate` val
  loss/bpb, round trips, grid probes; `memplan` micro-batches planned for a device's memory;
- `runlog` what a run records while it trains and its result record; `checkpoint` resume;
  `train` the DeepSpeed loop; `packed/` seed packing (`model`, `optim`, `loop`, `bench`: K
  same-shape runs as one stacked model);
- `cache` the results cache and run queue; `scheduling` tasks (a run or a pack) and their
  order; `executors` local processes, Ray or Slurm (submitit) over one queue; `dryrun` every
  configuration of a profile for a few steps, nothing cached; `gpucheck` the GPU checks
  `scripts/gpu_check.sh` runs; `bench` the step benchmark; `runs` the `runs` and `export`
  commands; `cli` the commands (`__main__` is `python -m engine`).
"""

__version__ = "0.1.0"
