"""A KV cache that outlives a generate call (HF engine, knob ``kv_cache_mb``): each decoded row's keys and values,
kept by the tokens they cover, so a later call that continues a known token sequence prefills only what is new.

It serves three callers with one lookup, the longest common prefix of a request's tokens with a kept row:
- APRIL's partials (arXiv:2509.18521): an aborted row is kept with every token it fed; its resume (prompt +
  partial) matches all but the last sampled token, so only that token is prefilled (no re-prefill).
- LATR / ROSE branches (arXiv:2510.24627, 2601.05053): a branch ``parent[:t] + [token]`` matches its parent's row
  up to ``t``: the parent's cache is sliced (a copy of its first positions), not prefilled again.
- A conversation's turns (envs/loop.py calls ``generate`` with the growing context): turn k+1's context starts
  with turn k's prompt and completion, so only the environment's reply is prefilled.

Entries are found through rolling hashes of their tokens at every ``BLOCK``-token boundary (vLLM's prefix-block
idea; every length below the first) and at their full length, then the match is extended token by token
against the entry (a hash collision can never serve wrong keys: tokens are compared). Slicing a causal model's
cache to its first ``m`` positions is the cache of those ``m`` tokens, so a hit is the same function as a fresh
prefill, up to float rounding (tests/generation/test_kv_store.py: greedy outputs and logprobs equal with and
without). Kept keys are only valid for the weights that computed them: the engine clears the store when its
weight version changes.

Memory is bounded by ``max_bytes``: least recently used entries are evicted. The store reads and writes
per-layer key/value tensors ``[1, H, T, d]`` and knows nothing of the model; the engine moves them in and out of
transformers' ``DynamicCache``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

BLOCK = 8  # tokens between the hashed boundaries of an entry (the lookup's granularity before token extension)


@dataclass
class Entry:
    eid: int
    tokens: tuple[int, ...]  # the tokens whose keys and values are kept
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each [1, H, T, d]
    keys: list[int]  # the hashes under which it is indexed
    nbytes: int


def _hashes(tokens: tuple[int, ...] | list[int], upto: int) -> list[tuple[int, int]]:
    """(length, rolling hash of tokens[:length]) at every length below BLOCK (short prompts) and at each BLOCK
    boundary after, up to ``upto``."""
    out, h = [], 0
    for n in range(1, upto + 1):
        h = hash((h, tokens[n - 1]))
        if n < BLOCK or n % BLOCK == 0:
            out.append((n, h))
    return out


def _full_hash(tokens: tuple[int, ...] | list[int]) -> int:
    return hash(("full", tuple(tokens)))


class KVStore:
    """Per-row key/value tensors kept across calls, looked up by longest common prefix; LRU-bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[int, Entry] = OrderedDict()  # id -> entry, least recently used first
        self.index: dict[int, int] = {}  # hash -> entry id
        self.bytes = 0
        self._next = 0
        self.counters = {"hits": 0, "misses": 0, "hit_tokens": 0, "evictions": 0, "clears": 0}

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        """Drop every entry (the weights changed: kept keys are stale)."""
        if self.entries:
            self.counters["clears"] += 1
        self.entries.clear()
        self.index.clear()
        self.bytes = 0

    def lookup(self, tokens: list[int]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]] | None, int]:
        """The kept keys/values of the longest prefix of ``tokens[:-1]`` (at least one token is left to feed,
        whose logits start the decode): (per-layer [1, H, m, d] slices, m), or (None, 0) on a miss."""
        limit = len(tokens) - 1
        best: Entry | None = None
        eid = self.index.get(_full_hash(tokens[:limit])) if limit > 0 else None
        if eid is not None and self.entries[eid].tokens == tuple(tokens[:limit]):
            best = self.entries[eid]
        else:
            for n, h in reversed(_hashes(tokens, limit)):
                eid = self.index.get(h)
                if eid is not None and self.entries[eid].tokens[:n] == tuple(tokens[:n]):
                    best = self.entries[eid]
                    break
        if best is None:
            self.counters["misses"] += 1
            return None, 0
        m, top = 0, min(len(best.tokens), limit)
        while m < top and best.tokens[m] == tokens[m]:  # extend past the block boundary, token by token
            m += 1
        self.entries.move_to_end(best.eid)
        self.counters["hits"] += 1
        self.counters["hit_tokens"] += m
        return [(k[:, :, :m], v[:, :, :m]) for k, v in best.kv], m

    def put(self, tokens: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep ``kv`` (per layer [1, H, len(tokens), d], owned by the store) as the cache of ``tokens``."""
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if not tokens or nbytes > self.max_bytes:
            return
        t = tuple(tokens)
        keys = [h for _, h in _hashes(t, len(t))] + [_full_hash(t)]
        eid, self._next = self._next, self._next + 1
        self.entries[eid] = Entry(eid, t, kv, keys, nbytes)
        for h in keys:  # the newest entry serves a shared prefix (the older ones still hold it too)
            self.index[h] = eid
        self.bytes += nbytes
        while self.bytes > self.max_bytes:
            self._evict()

    def _evict(self) -> None:
        eid, e = self.entries.popitem(last=False)
        for h in e.keys:
            if self.index.get(h) == eid:
                del self.index[h]
        self.bytes -= e.nbytes
        self.counters["evictions"] += 1

    def metrics(self) -> dict[str, float]:
        """Counters since the engine was built, and what is kept now (``kv_cache/*``)."""
        return {**{f"kv_cache/{k}": float(v) for k, v in self.counters.items()},
                "kv_cache/entries": float(len(self.entries)), "kv_cache/mib": self.bytes / 2**20}
