"""Bridges to other RL post-training libraries (optional extras; nothing here is imported by ``rollwise``)."""
