"""Training the LSTM LM on the transcripts of the training cuts or on a text file of sentences.

Every epoch ends with the validation perplexity (``<exp>/ppl.json``, the log, tensorboard) and a checkpoint
``epoch-N.pt`` (model, optimiser, RNG states, config, tokenizer identity). A rerun resumes after the newest
checkpoint and never repeats a finished epoch; its batches and dropout masks are those of an uninterrupted
run, because the batch order depends only on the seed and the epoch and the RNG states are restored. A text
file is tokenised once into ``<exp>/text_tokens/`` and read from there memory-mapped, so its size is bounded
by the disk, not the memory.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from kd.config import ConfigError, from_dict, save_yaml, to_dict
from kd.data.io import atomic_path, load_cuts
from kd.data.tokenizer import Tokenizer
from kd.lm.config import LmConfig
from kd.lm.data import batches, cut_sentences
from kd.lm.model import build_lm
from kd.lm.restore import check_lm_tokenizer
from kd.lm.tokens import TokenStore, tokenize_text
from kd.targets.manifest import TokenizerInfo, tokenizer_info
from kd.train.checkpoint import epoch_checkpoints, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from kd.train.trainer import resolve_device, seed_everything


def perplexity(nll: float, num_tokens: int) -> float:
    """exp of the NLL per token (end symbols counted as tokens); inf for no tokens."""
    return math.exp(nll / num_tokens) if num_tokens else math.inf


class LmTrainer:
    """Trains the LM of ``config`` on ``train_cuts``' transcripts, or on the lines of ``train_text`` when it
    is given (then ``train_cuts`` must be None), into ``exp_dir``, validating on ``valid_cuts``'
    transcripts; token ids come from the BPE model ``bpe_model``."""

    def __init__(
        self,
        config: LmConfig,
        exp_dir: Path,
        train_cuts: Path | None,
        valid_cuts: Path,
        bpe_model: Path,
        train_text: Path | None = None,
    ) -> None:
        if (train_cuts is None) == (train_text is None):
            raise ValueError("give the LM's training text as train_cuts or as train_text, not both or none")
        self.config = config
        self.exp_dir = Path(exp_dir)
        self.train_data = Path(train_cuts if train_text is None else train_text)
        self.train_is_text = train_text is not None
        self.valid_cuts = Path(valid_cuts)
        self.device = resolve_device(config.device)
        if self.device.type == "cpu" and config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        seed_everything(config.seed)
        self.tokenizer = Tokenizer(bpe_model)
        self.tokenizer_info = tokenizer_info(self.tokenizer)
        self.model = build_lm(config, self.tokenizer.vocab_size).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.epoch = 1  # the epoch being trained (1-based)
        self.global_step = 0
        self.writer: SummaryWriter | None = None

    # ---- experiment directory -------------------------------------------------------------------------
    def _prepare_exp_dir(self) -> None:
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.exp_dir / "config.yaml"
        if cfg_path.is_file():
            with open(cfg_path) as f:
                old = from_dict(LmConfig, yaml.safe_load(f) or {}, str(cfg_path))
            if old.model_fields() != self.config.model_fields():
                raise ConfigError(
                    f"{cfg_path} holds another LM ({old.model_fields()}) than the one given "
                    f"({self.config.model_fields()}); use another --exp-dir or remove the old experiment"
                )
        save_yaml(self.config, cfg_path)
        self.writer = SummaryWriter(str(self.exp_dir / "tensorboard"))
        num_params = sum(p.numel() for p in self.model.parameters())
        logging.info("LM parameters: %s; tokenizer %s", f"{num_params:,}", self.tokenizer_info.describe())

    def _resume(self) -> None:
        found = epoch_checkpoints(self.exp_dir)
        if not found:
            return
        path = found[max(found)]
        state = load_checkpoint(path)
        check_lm_tokenizer(from_dict(TokenizerInfo, state["tokenizer"]), self.tokenizer_info, str(path))
        source = self._source()
        old = {k: state[k] for k in ("train_cuts", "train_text") if k in state}
        if old != source:
            # Resuming would mix two texts in one LM, or call an LM of the old text finished.
            raise ConfigError(
                f"{path} was trained on {old}, not on {source}; use another --exp-dir or remove the old LM"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        self.epoch = state["epoch"] + 1
        self.global_step = state["global_step"]
        logging.info("resumed from %s: epoch %d, global batch %d", path, self.epoch, self.global_step)

    def _source(self) -> dict[str, str]:
        """What the LM trains on, as its checkpoints record it."""
        return {"train_text" if self.train_is_text else "train_cuts": str(self.train_data)}

    def _state(self, train_ppl: float, valid_ppl: float) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "config": to_dict(self.config),
            "tokenizer": asdict(self.tokenizer_info),
            **self._source(),
            "train_ppl": train_ppl,
            "valid_ppl": valid_ppl,
        }

    # ---- the loop --------------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, float]]:
        """Trains the remaining epochs; returns the per-epoch records of ``ppl.json``."""
        self._prepare_exp_dir()
        try:
            self._resume()
            if self.epoch > self.config.num_epochs:
                logging.info("%s: all %d epochs are trained", self.exp_dir, self.config.num_epochs)
                return self._records()
            if self.train_is_text:
                train = tokenize_text(self.train_data, self.tokenizer, self.exp_dir / "text_tokens")
            else:
                train = cut_sentences(load_cuts(self.train_data), self.tokenizer, str(self.train_data))
            valid = cut_sentences(load_cuts(self.valid_cuts), self.tokenizer, str(self.valid_cuts))
            logging.info("LM text: %d training and %d validation sentences", len(train), len(valid))
            while self.epoch <= self.config.num_epochs:
                train_ppl = self._train_epoch(train)
                valid_ppl = self._validate(valid)
                self._record(train_ppl, valid_ppl)
                save_checkpoint(self.exp_dir / f"epoch-{self.epoch}.pt", self._state(train_ppl, valid_ppl))
                self.epoch += 1
        finally:
            if self.writer is not None:
                self.writer.close()
        return self._records()

    def _train_epoch(self, sentences: TokenStore) -> float:
        cfg = self.config
        self.model.train()
        nll_total, num_tokens = 0.0, 0
        start = time.time()
        loader = batches(sentences, cfg.max_tokens, cfg.max_sentences, seed=cfg.seed + self.epoch)
        bar = tqdm(loader, desc=f"LM epoch {self.epoch}", dynamic_ncols=True)
        for tokens, lens in bar:
            tokens, lens = tokens.to(self.device), lens.to(self.device)
            nll = self.model(tokens, lens).sum()
            count = int(lens.sum()) + lens.numel()  # every sentence's end symbol is a token too
            (nll / count).backward()
            clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.global_step += 1
            nll_total += nll.item()
            num_tokens += count
            if self.global_step % cfg.log_interval == 0:
                loss = nll.item() / count
                bar.set_postfix(loss=f"{loss:.3f}")
                self._log_scalars("train", {"loss": loss, "grad_norm": grad_norm})
        elapsed = time.time() - start
        train_ppl = perplexity(nll_total, num_tokens)
        logging.info(
            "epoch %d: training perplexity %.3f, %d tokens in %.1f s (%.0f tokens/s)",
            self.epoch,
            train_ppl,
            num_tokens,
            elapsed,
            num_tokens / max(elapsed, 1e-9),
        )
        self._log_scalars("train_epoch", {"ppl": train_ppl})
        return train_ppl

    @torch.no_grad()
    def _validate(self, sentences: TokenStore) -> float:
        self.model.eval()
        nll_total, num_tokens = 0.0, 0
        for tokens, lens in batches(sentences, self.config.max_tokens, self.config.max_sentences):
            nll_total += self.model(tokens.to(self.device), lens.to(self.device)).sum().item()
            num_tokens += int(lens.sum()) + lens.numel()
        self.model.train()
        valid_ppl = perplexity(nll_total, num_tokens)
        logging.info("epoch %d: validation perplexity %.3f (%d tokens)", self.epoch, valid_ppl, num_tokens)
        self._log_scalars("valid", {"ppl": valid_ppl})
        return valid_ppl

    # ---- records ---------------------------------------------------------------------------------------
    def _records(self) -> list[dict[str, float]]:
        path = self.exp_dir / "ppl.json"
        return json.loads(path.read_text()) if path.is_file() else []

    def _record(self, train_ppl: float, valid_ppl: float) -> None:
        """Writes this epoch's perplexities into ``ppl.json`` (replacing a record of a killed earlier try)."""
        records = [r for r in self._records() if r["epoch"] < self.epoch]
        records.append({"epoch": self.epoch, "train_ppl": train_ppl, "valid_ppl": valid_ppl})
        with atomic_path(self.exp_dir / "ppl.json") as tmp:
            tmp.write_text(json.dumps(records, indent=2) + "\n")

    def _log_scalars(self, tag: str, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            self.writer.add_scalar(f"{tag}/{k}", v, self.global_step)
