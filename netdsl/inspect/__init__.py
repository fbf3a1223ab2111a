"""Looking at trained networks: filters, saliency, nearest neighbours, runs
compared side by side, ablations, ensembles, ONNX export and per-layer timing.
One module per command; `commands.register` adds them to the command line."""
