"""Data stages: lhotse manifests -> fbank features -> BPE tokenizer -> batches.

Modules: ``librispeech`` / ``librilight`` / ``kaldi`` (corpus -> recordings and supervisions manifests),
``features`` (cuts with stored 80-dim fbank), ``tokenizer`` (sentencepiece model with blank id 0),
``validate`` (manifest consistency checks), ``dataset`` and ``datamodule`` (padded batches for training).
Manifest file names are in ``io``; errors on bad input in ``errors``.
"""
