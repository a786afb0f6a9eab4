"""Whether the connector is ready, and if not why: what /readyz reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PipelineStatus:
    """What /readyz reports; each flag is set by the step that establishes it."""

    kafka_ready: bool = False
    state_loaded: bool = False
    logged_in: bool = False
    stopping: bool = False
    failure: str | None = None
    brake: str | None = None

    def not_ready_reason(self) -> str | None:
        if self.failure:
            return self.failure
        if self.brake:
            return self.brake
        if self.stopping:
            return "shutting down"
        for ready, what in (
            (self.kafka_ready, "Kafka producer not initialised"),
            (self.state_loaded, "checkpoint state not loaded"),
            (self.logged_in, "not logged in to the vendor API"),
        ):
            if not ready:
                return what
        return None
