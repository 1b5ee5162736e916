"""The training engine: everything about one run, and the cache of finished runs.

It knows nothing about claims. Modules, leaves first (no module imports one that imports it;
tests/engine/test_imports.py checks the graph):

- `paths` where things live on disk (cache, `<cache>/_data`); `atomic` the one atomic file
  writer; `faults` kill points for the fault tests; `runtime` device, process group, autocast,
  CPU threads; `options` the options the CLI shares with the pytest plugin;
- `source` data-source strings parsed into a value; `spec` the frozen RunSpec (identity, bits);
  `ladder` the size registry; `schedule` LR/momentum schedules; `design` profiles as data;
- `quant` fake quantisation and export; `model` the GPT; `muon`, `optim` optimisers;
- `tokenizer`, `bpb`, `data` tokenizers, bits per byte, corpora and batches; `evaluate` val
  loss/bpb, round trips, grid probes;
- `runlog` what a run records while it trains and its result record; `checkpoint` resume;
  `train` the DeepSpeed loop; `packed/` seed packing (model, optim, loop, bench);
- `cache` the results cache and run queue; `bench` the step benchmark; `cli` the commands.
"""

__version__ = "0.1.0"
