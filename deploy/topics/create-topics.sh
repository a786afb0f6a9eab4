#!/usr/bin/env bash
# Creates cdr-connector's three topics with Apache Kafka's kafka-topics.sh; the same
# specification as kafkatopics.yaml (Strimzi). Safe to run again (--if-not-exists).
#
#   BOOTSTRAP=broker:9092 deploy/topics/create-topics.sh
#   BOOTSTRAP=broker:9093 COMMAND_CONFIG=admin.properties deploy/topics/create-topics.sh
#
# Environment (defaults in brackets): BOOTSTRAP [localhost:9092], COMMAND_CONFIG (a client
# properties file for TLS/SASL), KAFKA_TOPICS [kafka-topics.sh], TOPIC [cdr.calls],
# DEAD_LETTER_TOPIC [cdr.calls.dlq], STATE_TOPIC [cdr-connector.state], PARTITIONS [6],
# REPLICATION_FACTOR [3], MIN_INSYNC_REPLICAS [2], RETENTION_MS [604800000, 7 days].
# The topic names must match the connector's kafka.topic, kafka.dead_letter_topic and
# kafka.state_topic.
set -euo pipefail

BOOTSTRAP=${BOOTSTRAP:-localhost:9092}
KAFKA_TOPICS=${KAFKA_TOPICS:-kafka-topics.sh}
TOPIC=${TOPIC:-cdr.calls}
DEAD_LETTER_TOPIC=${DEAD_LETTER_TOPIC:-cdr.calls.dlq}
STATE_TOPIC=${STATE_TOPIC:-cdr-connector.state}
PARTITIONS=${PARTITIONS:-6}
REPLICATION_FACTOR=${REPLICATION_FACTOR:-3}
MIN_INSYNC_REPLICAS=${MIN_INSYNC_REPLICAS:-2}
RETENTION_MS=${RETENTION_MS:-604800000}

common=(--bootstrap-server "$BOOTSTRAP")
if [ -n "${COMMAND_CONFIG:-}" ]; then
  common+=(--command-config "$COMMAND_CONFIG")
fi

create() {
  "$KAFKA_TOPICS" "${common[@]}" --create --if-not-exists "$@"
}

# The records, committed in transactions.
create --topic "$TOPIC" --partitions "$PARTITIONS" --replication-factor "$REPLICATION_FACTOR" \
  --config cleanup.policy=delete \
  --config retention.ms="$RETENTION_MS" \
  --config min.insync.replicas="$MIN_INSYNC_REPLICAS"

# Dead letters: bills that could not be normalised or encoded.
create --topic "$DEAD_LETTER_TOPIC" --partitions "$PARTITIONS" \
  --replication-factor "$REPLICATION_FACTOR" \
  --config cleanup.policy=delete \
  --config retention.ms="$RETENTION_MS" \
  --config min.insync.replicas="$MIN_INSYNC_REPLICAS"

# The committed-id state: one partition, compacted, read to its end at start-up.
create --topic "$STATE_TOPIC" --partitions 1 --replication-factor "$REPLICATION_FACTOR" \
  --config cleanup.policy=compact \
  --config min.insync.replicas="$MIN_INSYNC_REPLICAS"
