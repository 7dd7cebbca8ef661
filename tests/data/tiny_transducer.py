"""The smallest transducer config the recipe and target tests train: ~8 k parameters, one epoch on a few cuts in
well under a second (a ``model:`` section of a training config)."""

TINY_MODEL = {
    "encoder": {
        "subsampling_channels": 4,
        "num_layers": 1,
        "d_model": 16,
        "num_heads": 2,
        "ffn_dim": 32,
        "conv_kernel": 3,
        "dropout": 0.0,
    },
    "decoder": {"type": "stateless", "dim": 16, "context_size": 2},
    "joiner_dim": 16,
}
