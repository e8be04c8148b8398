"""The real-checkpoint path (``model.path``) end to end on GSM8K rows, with tiny random-init Qwen2 and Llama
models saved locally and a tokenizer that has a chat template — the same code that runs a real Qwen."""

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rollwise.train.model import build_char_tokenizer, build_tiny_model
from rollwise.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")


def _save(kind: str, path: Path) -> Path:
    tok = build_char_tokenizer()
    tok.chat_template = CHAT
    if kind == "qwen2":
        model = build_tiny_model(tok, layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, max_positions=2048)
    else:
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                          pad_token_id=0, eos_token_id=1, bos_token_id=2)
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.skipif(not DATA.is_file(), reason="shared data not present")
@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_gsm8k_config_with_local_model(kind, tmp_path, smoke_cfg):
    path = _save(kind, tmp_path / kind)
    cfg = smoke_cfg(
        f"--model.path={path}", "--warmstart.enabled=false", "--task.suite=dataset",
        "--task.dataset=gsm8k:train", "--task.eval_dataset=gsm8k:test", "--task.train_limit=20",
        "--task.eval_limit=4", "--task.template=gsm8k", "--task.verifier=gsm8k",
        "--task.system_prompt='Be brief.'", "--trainer.steps=2", "--generation.max_new_tokens=6",
        "--sampler.batch_prompts=3", "--sampler.group_size=2", f"--run.name={kind}",
    )
    t = Trainer(cfg)
    assert "<assistant>" in t.tok.decode(t.encode(t.task.pool[0].text))
    result = t.train()
    t.close()
    assert "eval/all/pass@1" in result
    assert (t.run_dir / "checkpoints" / "step_000002" / "model.safetensors").is_file()


def test_lora_option(tmp_path, smoke_cfg):
    pytest.importorskip("peft")
    path = _save("qwen2", tmp_path / "base")
    cfg = smoke_cfg(f"--model.path={path}", "--warmstart.enabled=false", "--model.lora_rank=4",
                    "--model.lora_targets=['q_proj','v_proj']", "--trainer.steps=1", "--run.name=lora")
    t = Trainer(cfg)
    trainable = [n for n, p in t.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    t.train()
    t.close()


def test_lora_resume(tmp_path, smoke_cfg):
    pytest.importorskip("peft")
    path = _save("qwen2", tmp_path / "base")
    common = [f"--model.path={path}", "--warmstart.enabled=false", "--model.lora_rank=4", "--run.name=lr"]
    t = Trainer(smoke_cfg(*common, "--trainer.steps=2", "--trainer.checkpoint_every=1"))
    t.train()
    t.close()
    r = Trainer(smoke_cfg(*common, "--trainer.steps=3"))
    r.train(resume=True)
    r.close()
    assert r.step_index == 3
