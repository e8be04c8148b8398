"""Model and tokenizer: the embedded tiny Qwen2 with a character-level fast tokenizer, or any local HF
causal LM. Both save with ``save_pretrained`` and load back through the Auto classes, so the embedded
default and a real checkpoint travel the same code path."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

PAD, EOS, BOS = "<pad>", "<eos>", "<bos>"
CHARS = string.digits + string.ascii_letters + string.punctuation + " \n"


def build_char_tokenizer(chars: str = CHARS) -> PreTrainedTokenizerFast:
    """A character-level transformers fast tokenizer: one token per character, plus pad/eos/bos."""
    vocab = {PAD: 0, EOS: 1, BOS: 2}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, bos_token=BOS)
    fast.padding_side = "left"
    return fast


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, *, layers: int = 4, hidden: int = 128, heads: int = 4,
                     kv_heads: int = 2, intermediate: int = 384, tie_embeddings: bool = True, seed: int = 0,
                     max_positions: int = 256) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2-architecture causal LM sized for a 2-core CPU (~1M parameters)."""
    cfg = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions, tie_word_embeddings=tie_embeddings,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(cfg)
    return model


def build_embedded_model(tokenizer: PreTrainedTokenizerFast, m: Any, seed: int) -> Qwen2ForCausalLM:
    """The embedded model with the shape given by a ``ModelConfig`` (``m``)."""
    return build_tiny_model(tokenizer, layers=m.layers, hidden=m.hidden, heads=m.heads, kv_heads=m.kv_heads,
                            intermediate=m.intermediate, tie_embeddings=m.tie_embeddings, seed=seed)


class ModelLoadError(RuntimeError):
    """A model path that is missing or is not a loadable HF causal LM with its tokenizer."""


def load_model(path: str | Path, *, dtype: torch.dtype = torch.float32,
               device: str | torch.device = "cpu") -> tuple[PreTrainedModel, Any]:
    """Load any local HF causal LM and its tokenizer (left padding, a pad token guaranteed)."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model path not found: {p}")
    if p.is_dir() and not (p / "config.json").is_file():
        raise ModelLoadError(f"{p} is not a model directory: it has no config.json (an HF causal LM saved with "
                             "save_pretrained, with its tokenizer files)")
    try:
        tok = load_tokenizer(p)
        model = AutoModelForCausalLM.from_pretrained(p, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{p} is not a loadable model directory (an HF causal LM with its tokenizer: "
                             f"config.json, weights, tokenizer files): {first}") from None
    except (SafetensorError, RuntimeError, EOFError) as exc:  # the weight files' fault, not rollwise's
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        files = ", ".join(sorted(f.name for f in p.glob("*.safetensors")) + sorted(f.name for f in p.glob("*.bin")))
        raise ModelLoadError(f"{p}: its weights ({files or 'no weight files'}) do not load (a truncated or corrupt "
                             f"file, e.g. an interrupted copy or save, or weights that do not match config.json): "
                             f"{first}") from None
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model.to(device), tok


def is_char_tokenizer(path: Path) -> bool:
    """Whether ``path`` holds the embedded character tokenizer (a WordLevel model split one character at a
    time, as :func:`build_char_tokenizer` saves it)."""
    f = path / "tokenizer.json"
    if not f.is_file():
        return False
    spec = json.loads(f.read_text())
    pre = spec.get("pre_tokenizer") or {}
    return spec.get("model", {}).get("type") == "WordLevel" and pre.get("pattern") == {"Regex": "."}


def load_tokenizer(path: Path) -> Any:
    """The tokenizer saved at ``path``. The embedded character tokenizer is loaded as the fast tokenizer it was
    saved as: AutoTokenizer rebuilds it as the model type's class (Qwen2's), whose own pre-tokenizer drops
    spaces and newlines (harmless for arithmetic prompts, fatal for text with words: an environment's turns)."""
    if is_char_tokenizer(path):
        return PreTrainedTokenizerFast.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
