"""A stand-in for the vendor's CDR API: a real HTTP server that behaves like the documented
one, faults included, fed by a generator of realistic call records. Used for demos, load
tests and every integration test of the connector.

    async with running_simulator(SimulatorConfig(backlog=1000, rate=0)) as sim:
        ...  # POST form data to sim.url, drive faults through sim.admin_url

`SimulatorConfig(accounts=N)` serves N vendor accounts at once (fleet.py).
"""

from cdr_connector.simulator.clock import Clock, ManualClock, SystemClock
from cdr_connector.simulator.config import FaultConfig, SimulatorConfig
from cdr_connector.simulator.fleet import Fleet
from cdr_connector.simulator.running import RunningSimulator, running_simulator
from cdr_connector.simulator.server import create_app

__all__ = [
    "Clock",
    "FaultConfig",
    "Fleet",
    "ManualClock",
    "RunningSimulator",
    "SimulatorConfig",
    "SystemClock",
    "create_app",
    "running_simulator",
]
