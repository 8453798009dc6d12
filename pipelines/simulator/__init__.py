"""The bundled Quorum API simulator: a deterministic world on a simulated clock, served over HTTP.

    from pipelines.simulator import World, SimulatorServer, Faults
    world = World(seed=7, n_records=5000)
    with SimulatorServer(world, faults=Faults(error_rate=0.1)) as sim:
        ...  # talk to sim.base_url

It shares no code with the pipeline's client: it is an independent implementation of
`docs/quorum-api.md`, so the two check each other.
"""

from __future__ import annotations

from pipelines.simulator.faults import Faults, Stats
from pipelines.simulator.gsm import segment_count
from pipelines.simulator.server import SimulatorServer
from pipelines.simulator.world import World

__all__ = ["Faults", "SimulatorServer", "Stats", "World", "segment_count"]
