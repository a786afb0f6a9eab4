"""What /readyz says while the connector is not ready: the first reason in order of weight."""

from __future__ import annotations

from cdr_connector.status import PipelineStatus


def ready() -> PipelineStatus:
    return PipelineStatus(kafka_ready=True, state_loaded=True, logged_in=True)


def test_a_started_connector_with_every_step_done_is_ready() -> None:
    assert ready().not_ready_reason() is None


def test_a_new_status_waits_for_kafka_first() -> None:
    assert PipelineStatus().not_ready_reason() == "Kafka producer not initialised"


def test_the_steps_are_waited_for_in_the_order_they_happen() -> None:
    assert PipelineStatus(kafka_ready=True).not_ready_reason() == "checkpoint state not loaded"
    status = PipelineStatus(kafka_ready=True, state_loaded=True)
    assert status.not_ready_reason() == "not logged in to the vendor API"


def test_each_step_not_yet_done_is_named() -> None:
    status = ready()
    status.logged_in = False
    assert status.not_ready_reason() == "not logged in to the vendor API"
    status.state_loaded = False
    assert status.not_ready_reason() == "checkpoint state not loaded"


def test_a_failure_outweighs_the_brake_which_outweighs_a_shutdown() -> None:
    status = ready()
    status.stopping = True
    assert status.not_ready_reason() == "shutting down"
    status.brake = "the brake engaged: 9 of 10 bills dead-lettered"
    assert status.not_ready_reason() == "the brake engaged: 9 of 10 bills dead-lettered"
    status.failure = "producer fenced"
    assert status.not_ready_reason() == "producer fenced"


def test_a_failure_is_reported_even_before_kafka_is_ready() -> None:
    assert PipelineStatus(failure="login refused").not_ready_reason() == "login refused"
