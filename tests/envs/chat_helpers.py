"""A small stand-in for SmolLM2-135M-Instruct's tokenizer, built here (no download): a byte-level BPE trained on
the ledger game's words with SmolLM2's special tokens and chat template, and a 1-layer random Llama on it."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = ROOT / "models" / "smollm2"  # the real checkpoint where imported (git-ignored)
SMOL_CHAT = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>"
             "system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
             "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
             "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")  # SmolLM2-Instruct's


@cache
def smol_like_tokenizer() -> Any:
    """A 400-token byte-level BPE with SmolLM2's special tokens (eos = pad = <|im_end|>) and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rollwise.envs.ledger import INVALID, Ledger, expert_actions

    env = Ledger(["mix2", "mul1"])
    corpus = [t.text for t in env.tasks("train", 200, 7)] + [INVALID, "You solve math word problems."]
    corpus += [a for t in env.tasks("train", 60, 8) for a in expert_actions(t.meta["op"], tuple(t.meta["operands"]))]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tok.chat_template = SMOL_CHAT
    return tok


def save_smol_like(path: Path) -> Path:
    """A saved HF dir: a 1-layer random Llama on :func:`smol_like_tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smol_like_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path
