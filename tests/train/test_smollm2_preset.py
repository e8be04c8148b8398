"""``configs/smollm2_arith.toml`` end to end with a stand-in for SmolLM2: a tiny random-init Llama whose tokenizer
is a byte-level BPE trained here on word problems (no download) and carries SmolLM2's chat template. Trains 2
steps through ``rollwise train`` and scores a jsonl file and the held-out word problems through ``rollwise
eval`` with the preset's template and verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from typer.testing import CliRunner

from rollwise.cli import app
from rollwise.config import load_config
from rollwise.data.templates import render_prompt
from rollwise.data.word_problems import build_word_suite

ROOT = Path(__file__).resolve().parents[2]
PRESET = str(ROOT / "configs" / "smollm2_arith.toml")
CHAT = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")  # SmolLM2-Instruct's
runner = CliRunner()


@pytest.fixture(scope="module")
def smol(tmp_path_factory) -> Path:
    """A saved HF dir: 1-layer Llama + a 400-token byte-level BPE trained on word problems, SmolLM2's template."""
    corpus = [p.text for p in build_word_suite(["add2", "sub2", "mul1", "mix2"], 200, 5, seed=7).pool]
    corpus += ["Answer in one short sentence that ends with the final number.", "The answer is 68.", "23 + 45 = 68"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tok.chat_template = CHAT
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("smollm2")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


TINY = ["--run.threads=1", "--generation.max_new_tokens=6", "--task.eval_size=2", "--task.train_size=24"]


def test_preset_settings():
    cfg = load_config(PRESET)
    t = cfg.task
    assert (t.suite, t.chat, t.template, t.verifier_name()) == ("words", True, "plain", "final_number")
    assert cfg.model.path == "models/smollm2" and not cfg.warmstart.enabled
    assert "number" in t.system_prompt and cfg.generation.eval_temperature == 0
    assert 48 <= cfg.generation.max_new_tokens <= 64
    assert (cfg.algo.lr, cfg.trainer.steps, cfg.trainer.eval_every) == (1e-5, 40, 20)  # as measured (benchmarks.md)
    assert cfg.sampler.batch_prompts * cfg.sampler.group_size <= cfg.generation.batch_size


def test_train_two_steps_with_preset(smol, tmp_path):
    res = runner.invoke(app, ["train", PRESET, f"--model.path={smol}", f"--run.out_dir={tmp_path}", *TINY,
                              "--trainer.steps=2", "--trainer.eval_every=0", "--trainer.checkpoint_every=0",
                              "--trainer.plots=false", "--trainer.progress=false", "--sampler.batch_prompts=2",
                              "--sampler.group_size=2", "--algo.micro_batch=4"], terminal_width=200)
    assert res.exit_code == 0, res.output + repr(res.exception)
    run = tmp_path / "smollm2-arith"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/mean/pass@1" in r]
    assert [r["step"] for r in evals] == [0, 2]
    for level in ("add1", "add2", "sub2", "mul1", "mul2", "div1"):
        assert 0.0 <= evals[-1][f"eval/{level}/parsed"] <= 1.0
        assert 0.0 <= evals[-1][f"eval/{level}/truncated"] <= 1.0
    assert (run / "checkpoints" / "step_000002" / "model.safetensors").is_file()


def test_prompts_use_the_chat_template_and_system_prompt(smol, tmp_path):
    cfg = load_config(PRESET, [f"--model.path={smol}"])
    tok = AutoTokenizer.from_pretrained(smol)
    text = render_prompt("What is 23 + 45?", cfg.task, tok)
    assert text == ("<|im_start|>system\nAnswer in one short sentence that ends with the final number.<|im_end|>\n"
                    "<|im_start|>user\nWhat is 23 + 45?<|im_end|>\n<|im_start|>assistant\n")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 3


def _eval(smol, tmp_path, data, *extra):
    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", "--model", str(smol), "--data", str(data), "--config", PRESET,
                              "--out", str(out), *TINY, *extra], terminal_width=200)
    return res, (json.loads(out.read_text()) if out.is_file() else None)


ROWS = [{"prompt": "What is 23 + 45?", "answer": 68, "level": "add"},
        {"prompt": "Tom has 3 boxes with 4 pens each. How many pens?", "answer": "12", "level": "mul"},
        {"prompt": "What is 7 + 1?", "answer": 8, "level": "add"}]


def test_eval_jsonl_file(smol, tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    res, report = _eval(smol, tmp_path, data)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert report["verifier"] == "final_number" and report["data/skipped_malformed"] == 0
    sets = sorted({k.split("/")[1] for k in report if k.startswith("eval/")} - {"mean"})
    assert sets == ["add", "all", "mul"]
    assert {"eval/all/pass@1", "eval/all/parsed", "eval/all/truncated", "eval/add/length"} <= set(report)


def test_eval_jsonl_bad_row_names_file_and_line_or_is_counted(smol, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(ROWS[0]) + "\n{not json\n" + json.dumps({"prompt": "What is 1 + 1?"}) + "\n"
                    + json.dumps(ROWS[2]) + "\n")
    res, _ = _eval(smol, tmp_path, data)
    assert res.exit_code != 0
    message = res.output + (str(res.exception) if res.exception else "")
    assert f"{data}: line 2: invalid JSON" in message
    res, report = _eval(smol, tmp_path, data, "--task.on_error=skip")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert report["data/skipped_malformed"] == 2  # line 2 (bad JSON) and line 3 (no answer)
    assert "eval/add/pass@1" in report


def test_eval_words_heldout_split(smol, tmp_path):
    res, report = _eval(smol, tmp_path, "words", "--task.eval_size=1")
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert report["verifier"] == "final_number"
    sets = sorted({k.split("/")[1] for k in report if k.startswith("eval/")} - {"mean"})
    assert sets == sorted(["add1", "add2", "sub2", "mul1", "mul2", "div1"])


def test_eval_words_needs_word_levels(smol, tmp_path):
    res = runner.invoke(app, ["eval", "--model", str(smol), "--data", "words", "--run.threads=1"])
    assert res.exit_code != 0
    message = res.output + (str(res.exception) if res.exception else "")
    assert "not word-problem levels" in message
