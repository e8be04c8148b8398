"""An environment's turns are text with spaces and newlines: the embedded character tokenizer must encode them
the same after a save and load (the warm start trains with the built tokenizer, RL runs with the loaded one;
AutoTokenizer rebuilt it as Qwen2's class, which dropped both)."""

from __future__ import annotations

from rollwise.train.model import build_char_tokenizer, build_tiny_model, is_char_tokenizer, load_model


def test_saved_char_tokenizer_keeps_spaces_and_newlines(tmp_path):
    tok = build_char_tokenizer()
    build_tiny_model(tok, layers=1, hidden=16, heads=2, kv_heads=1, intermediate=16).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert is_char_tokenizer(tmp_path)
    _, loaded = load_model(tmp_path)
    text = "guess 1-15\n8 up\n12 down\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert loaded(text, add_special_tokens=False)["input_ids"] == ids
    assert loaded.decode(ids) == text
    assert (loaded.eos_token_id, loaded.pad_token_id, loaded.padding_side) == (tok.eos_token_id, tok.pad_token_id,
                                                                               "left")
