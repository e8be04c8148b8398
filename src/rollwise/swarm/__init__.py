"""Swarm rollout sharing (SAPO, arXiv:2509.08721): the shared board and the ``[swarm]`` section. The node's side
(re-templating, re-tokenising and re-scoring others' rollouts) is ``rollwise.train.swarm``; nodes as Ray actors
``rollwise.train.swarm_nodes``."""

from rollwise.swarm.board import BOARDS, Board, DirBoard, MemoryBoard, SharedGroup, parse_group
from rollwise.swarm.config import SwarmConfig

__all__ = ["BOARDS", "Board", "DirBoard", "MemoryBoard", "SharedGroup", "SwarmConfig", "parse_group"]
