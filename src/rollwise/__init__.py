"""rollwise: reinforcement learning with verifiable rewards that spends rollouts where they teach."""

__version__ = "0.1.0"
