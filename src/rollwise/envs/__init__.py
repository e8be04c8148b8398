"""Multi-turn environments: the protocol (``base``), the agent loop that rolls episodes out through the engine
(``loop``), the collector that hands them to the trainer as groups of turns (``collector``), and the registered
environments. Environment packages are imported lazily (registered as ``module:attr`` strings)."""

from rollwise.envs.base import (
    ENV_FAULTS,
    ENVIRONMENTS,
    Env,
    EnvFault,
    EnvKnobs,
    StepEnv,
    StepResult,
    check_reward,
    guarded_call,
)
from rollwise.envs.chain import ChainKnobs
from rollwise.envs.guess import GuessKnobs
from rollwise.envs.ledger import LedgerKnobs
from rollwise.envs.openenv_env import OpenEnvKnobs
from rollwise.envs.textarena_env import TextArenaKnobs
from rollwise.envs.verifiers_env import VerifiersKnobs

ENVIRONMENTS.register("guess", "rollwise.envs.guess:GuessNumber", config=GuessKnobs,
                      doc="guess-the-number with higher/lower feedback (embedded default; best: binary search)")
ENVIRONMENTS.register("chain", "rollwise.envs.chain:ChainSum", config=ChainKnobs,
                      doc="running totals of a chain sum, one per turn (PivotRL / UI-S1 reference; functional "
                      "step check, expert, snapshot/restore)")
ENVIRONMENTS.register("ledger", "rollwise.envs.ledger:Ledger", config=LedgerKnobs,
                      doc="word problems with a calculator tool: CALC: <expr> / ANSWER: <n> (SmolLM2's game; "
                      "functional step check, expert, snapshot/restore)")
ENVIRONMENTS.register("textarena", "rollwise.envs.textarena_env:TextArenaGame", config=TextArenaKnobs,
                      doc="a TextArena single-player game (GuessTheNumber, TowerOfHanoi, ...; extra [textarena])")
ENVIRONMENTS.register("openenv", "rollwise.envs.openenv_env:OpenEnvClient", config=OpenEnvKnobs,
                      doc="a client of a running OpenEnv server over its WebSocket protocol (extra [openenv])")
ENVIRONMENTS.register("verifiers", "rollwise.envs.verifiers_env:VerifiersEnv", config=VerifiersKnobs,
                      doc="a Prime Intellect verifiers environment played by its own rollout loop through an "
                      "OpenAI-compatible client on the run's engine (extra [verifiers])")

__all__ = ["ENVIRONMENTS", "ENV_FAULTS", "Env", "EnvFault", "EnvKnobs", "StepEnv", "StepResult", "check_reward",
           "guarded_call"]
