"""rollwise inside other trainers. Each integration is one module that imports its framework on import
(``rollwise.integrations.trl`` needs ``pip install rollwise[trl]``); this package imports none of them."""
