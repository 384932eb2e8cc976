"""Running a model and reading it: forward hooks, the layer table, one inference pass, channel
mosaics, kernels, and which device a model runs on."""
