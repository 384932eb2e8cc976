"""Why a model answers as it does: ViT attention, receptive fields, and attribution methods."""
