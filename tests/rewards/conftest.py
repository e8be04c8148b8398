"""The user-code verifiers these tests import by ``package.module:function`` live beside this file: put it on
``sys.path`` once, before the test modules import them (verifier pool workers inherit ``sys.path``)."""

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
