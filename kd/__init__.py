"""rnnt-kd: knowledge distillation of RNN-Transducer speech recognisers."""

__version__ = "0.1.0"
