"""The offline synthetic read-speech corpus: text, voices, synthesis and the LibriSpeech-layout driver."""
