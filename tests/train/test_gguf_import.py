"""``rollwise model import``: a tiny random-init Llama with a byte-level BPE tokenizer and a chat template is
written to an f32 GGUF the way llama.cpp's converter lays it out, imported, and reloaded with the Auto
classes; the logits must be identical and the tokenizer must encode the same ids and keep the template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from typer.testing import CliRunner

from rollwise.cli import app
from rollwise.train.gguf import ModelImportError, clean_config_dict, import_gguf

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["What is 23 + 45? The answer is 68.", "Hello world, hello there.", "user assistant system 7 * 8 = 56"]
HEADS, KV_HEADS, LAYERS = 4, 2, 2


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE (the GPT-2 / SmolLM2 kind) trained on a few sentences, with a ChatML template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=SPECIALS[0], bos_token=SPECIALS[1],
                                   eos_token=SPECIALS[2], chat_template=TEMPLATE)


def build_model(vocab_size: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=128,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def llama_cpp_permute(w, n_head: int):
    """llama.cpp's converter reorders q/k rows for its rotary layout; transformers' GGUF loader undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, q8: bool = False) -> None:
    """A GGUF with the metadata keys and tensor names llama.cpp's convert_hf_to_gguf.py writes: all f32, or
    with ``q8`` every matrix in Q8_0 (norms stay f32, as llama.cpp keeps them)."""
    import gguf
    import numpy as np

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.ALL_F32)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(cfg.hidden_size // HEADS)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    backend = tok.backend_tokenizer
    tokens = [t for t, _ in sorted(backend.get_vocab().items(), key=lambda kv: kv[1])]
    merges = json.loads(backend.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_chat_template(TEMPLATE)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":  # tied: llama.cpp omits output.weight
            continue
        a = t.detach().numpy().astype(np.float32)
        if name.endswith("q_proj.weight"):
            a = llama_cpp_permute(a, HEADS)
        elif name.endswith("k_proj.weight"):
            a = llama_cpp_permute(a, KV_HEADS)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if q8 and a.ndim == 2:
            w.add_tensor(gguf_name, gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gguf_name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, LlamaForCausalLM, PreTrainedTokenizerFast]:
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    tok = build_tokenizer()
    model = build_model(len(tok))
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_gguf(path, model, tok)
    return path, model, tok


def test_import_roundtrips_weights_tokenizer_and_template(tiny_gguf, tmp_path):
    path, model, tok = tiny_gguf
    out = tmp_path / "hf"
    result = import_gguf(path, out)
    assert result.num_parameters == sum(p.numel() for p in model.parameters())
    assert result.model_type == "llama" and result.path == out
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    assert list(out.glob("*.safetensors"))

    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([[1, 5, 9, 20, 33, 7, 120, 250]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)  # f32 GGUF: exact

    tok2 = AutoTokenizer.from_pretrained(out)
    text = "What is 23 + 45? Hello there, 7 * 8"
    assert tok2(text).input_ids == tok(text).input_ids
    assert tok2.decode(tok2(text).input_ids) == text
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    assert tok2.chat_template == TEMPLATE
    assert (tok2.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            == tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    assert (tok2.eos_token, tok2.bos_token, tok2.pad_token) == (SPECIALS[2], SPECIALS[1], SPECIALS[0])


def test_bfloat16_import_is_the_rounded_weights(tiny_gguf, tmp_path):
    path, model, _ = tiny_gguf
    import_gguf(path, tmp_path / "bf16", dtype="bfloat16")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)
    ref = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    for name, value in loaded.state_dict().items():
        assert value.dtype == torch.bfloat16
        assert torch.equal(value, ref[name]), name


def test_q8_0_import_is_the_dequantized_blocks(tiny_gguf, tmp_path):
    import gguf

    _, model, tok = tiny_gguf
    path = tmp_path / "q8.gguf"
    write_gguf(path, model, tok, q8=True)
    import_gguf(path, tmp_path / "q8")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "q8")
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name, ref in model.state_dict().items():
        # blocks run along rows, so llama.cpp's q/k row permutation commutes with (de)quantization
        want = ref if ref.ndim == 1 else torch.from_numpy(gguf.quants.dequantize(
            gguf.quants.quantize(ref.numpy(), q8), q8).reshape(ref.shape))
        assert torch.equal(loaded.state_dict()[name], want), name  # exact: int8 x f16 scale fits f32
    emb = "model.embed_tokens.weight"
    assert not torch.equal(loaded.state_dict()[emb], model.state_dict()[emb])  # it really was quantized


def test_cli_prints_count_and_path_and_refuses_nonempty_dir(tiny_gguf, tmp_path):
    path, model, _ = tiny_gguf
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["model", "import", str(path), str(out)])
    assert res.exit_code == 0, res.output
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters" in res.output and str(out) in res.output
    with pytest.raises(ModelImportError, match="--overwrite"):
        import_gguf(path, out)
    (out / "model-00001-of-00002.safetensors").write_bytes(b"stale")
    import_gguf(path, out, overwrite=True)
    assert not (out / "model-00001-of-00002.safetensors").exists()


# ---- errors and config cleaning: no gguf package needed ----

def test_missing_file_not_gguf_and_bad_dtype_are_one_line_errors(tmp_path):
    with pytest.raises(ModelImportError, match="no such file"):
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelImportError, match="not a GGUF file"):
        import_gguf(fake, tmp_path / "out")
    with pytest.raises(ModelImportError, match="float32, bfloat16, float16"):
        import_gguf(fake, tmp_path / "out", dtype="int4")
    (tmp_path / "afile").write_text("x")
    fake.write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(ModelImportError, match="not a directory"):
        import_gguf(fake, tmp_path / "afile")
    assert not (tmp_path / "out").exists()


def test_missing_package_names_the_install_command(tmp_path, monkeypatch):
    import rollwise.train.gguf as mod

    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF\x03\x00\x00\x00")
    missing = {"gguf"}
    monkeypatch.setattr(mod, "_installed", lambda name: name not in missing)
    with pytest.raises(ModelImportError, match=r"needs the gguf package: pip install 'rollwise\[gguf\]'"):
        import_gguf(fake, tmp_path / "out")
    missing.add("accelerate")
    with pytest.raises(ModelImportError, match=r"gguf and accelerate packages: .*pip install gguf accelerate"):
        import_gguf(fake, tmp_path / "out")


def test_cli_prints_user_error_on_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # the app itself, its user-error handling included
        app(["model", "import", str(tmp_path / "nope.gguf"), str(tmp_path / "o")])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 1 and "no such file" in err and "Traceback" not in err, err


def test_truncated_gguf_is_a_user_error(tmp_path):
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    bad = tmp_path / "trunc.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 5)
    with pytest.raises(ModelImportError, match="could not import"):
        import_gguf(bad, tmp_path / "out")


def test_gguf_cut_short_is_a_user_error(tiny_gguf, tmp_path):
    path, _, _ = tiny_gguf
    bad = tmp_path / "half.gguf"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelImportError, match="could not import"):
        import_gguf(bad, tmp_path / "out")


def test_clean_config_drops_only_the_gguf_source():
    cfg = {"model_type": "llama", "hidden_size": 64, "_model_name_or_path": "x.gguf",
           "quantization_config": {"quant_method": "gguf", "gguf_file": "x.gguf"}}
    assert clean_config_dict(cfg) == {"model_type": "llama", "hidden_size": 64}


def test_unwritable_out_dir_fails_before_any_work(tmp_path, monkeypatch, capsys):
    """An output path that cannot be written (/proc/x, a path under a file) is refused before the packages are
    even looked for, let alone the model de-quantized (it failed after ~17 s of work); the check leaves no
    directories behind."""
    import rollwise.train.gguf as mod

    def no_work() -> None:
        raise AssertionError("the import started before the output path was checked")

    monkeypatch.setattr(mod, "require_gguf_packages", no_work)
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF\x03\x00\x00\x00")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ModelImportError, match="afile/sub/hf: cannot write there"):
        import_gguf(fake, tmp_path / "afile" / "sub" / "hf")
    if Path("/proc/self").is_dir():
        with pytest.raises(SystemExit) as exit_info:  # the CLI: one line, no traceback
            app(["model", "import", str(fake), "/proc/x"])
        err = " ".join(capsys.readouterr().err.split())
        assert exit_info.value.code == 1 and "/proc/x: cannot write there" in err and "Traceback" not in err, err
    with pytest.raises(AssertionError, match="started before"):  # a writable new path passes the check ...
        import_gguf(fake, tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # ... which made and removed its directories
