#!/usr/bin/env bash
# Grants the ACLs one cdr-connector source needs, with Apache Kafka's kafka-acls.sh.
# README.md beside this file explains each of them. Run it once per source (SOURCE is
# source.name; the transactional.id and the state consumer's group derive from it), with the
# principal of the process that runs the source: with [[sources]] one principal runs them all.
#
#   BOOTSTRAP=broker:9093 COMMAND_CONFIG=admin.properties PRINCIPAL=User:cdr-connector-acme-sh \
#     SOURCE=acme-sh deploy/topics/acls.sh
#
# Replicas sharing the sources (fleet.enabled = true) also need their consumer group and the
# coordination topic: add FLEET=1 (for one of the runs, or each: adding an ACL twice is a no-op).
#
#   for source in acme-sh acme-bj globex; do
#     BOOTSTRAP=broker:9093 COMMAND_CONFIG=admin.properties PRINCIPAL=User:cdr-connector-fleet \
#       SOURCE=$source FLEET=1 FLEET_GROUP=cdr-connector-fleet \
#       COORDINATION_TOPIC=cdr-connector-fleet.sources deploy/topics/acls.sh
#   done
#
# Environment (defaults in brackets): BOOTSTRAP [localhost:9092], COMMAND_CONFIG, KAFKA_ACLS
# [kafka-acls.sh], PRINCIPAL [User:cdr-connector], SOURCE [default], TRANSACTIONAL_ID
# [cdr-connector-$SOURCE, or kafka.transactional_id when set], TOPIC, DEAD_LETTER_TOPIC,
# STATE_TOPIC (as in create-topics.sh), ALLOW_CREATE_TOPICS [0: 1 when kafka.create_topics is
# true], IDEMPOTENT_WRITE [0: 1 only for brokers older than Kafka 2.8 that ask for it],
# FLEET [0: 1 when fleet.enabled is true], FLEET_GROUP [cdr-connector: fleet.group_id],
# COORDINATION_TOPIC [cdr-connector.sources: fleet.coordination_topic].
set -euo pipefail

BOOTSTRAP=${BOOTSTRAP:-localhost:9092}
KAFKA_ACLS=${KAFKA_ACLS:-kafka-acls.sh}
PRINCIPAL=${PRINCIPAL:-User:cdr-connector}
SOURCE=${SOURCE:-default}
TRANSACTIONAL_ID=${TRANSACTIONAL_ID:-cdr-connector-$SOURCE}
TOPIC=${TOPIC:-cdr.calls}
DEAD_LETTER_TOPIC=${DEAD_LETTER_TOPIC:-cdr.calls.dlq}
STATE_TOPIC=${STATE_TOPIC:-cdr-connector.state}
STATE_GROUP="cdr-connector-$SOURCE-state"
FLEET_GROUP=${FLEET_GROUP:-cdr-connector}
COORDINATION_TOPIC=${COORDINATION_TOPIC:-cdr-connector.sources}

common=(--bootstrap-server "$BOOTSTRAP")
if [ -n "${COMMAND_CONFIG:-}" ]; then
  common+=(--command-config "$COMMAND_CONFIG")
fi

allow() {
  "$KAFKA_ACLS" "${common[@]}" --add --allow-principal "$PRINCIPAL" "$@"
}

# Records and dead letters: produce, and see the topics (the start-up topic check lists them).
allow --operation Write --operation Describe --topic "$TOPIC"
allow --operation Write --operation Describe --topic "$DEAD_LETTER_TOPIC"

# The state: written in every transaction, read to its end (read_committed) at start-up.
allow --operation Write --operation Read --operation Describe --topic "$STATE_TOPIC"

# The state reader's consumer group: it assigns the partition itself and never joins the group
# or commits offsets, but its group.id makes the client look up the group's coordinator, which
# the broker authorizes with Describe on the group.
allow --operation Describe --group "$STATE_GROUP"

# Transactions: initialise (fencing older instances), add partitions, commit and abort.
allow --operation Write --operation Describe --transactional-id "$TRANSACTIONAL_ID"

if [ "${FLEET:-0}" = 1 ]; then
  # The replicas' consumer group: joining it, heartbeats and leaving it (Read, which implies
  # Describe: finding the group's coordinator and the committed offsets of an assignment).
  allow --operation Read --group "$FLEET_GROUP"
  # The coordination topic, one partition per source: subscribed to (Read, Describe), created
  # by the connector when missing (Create) and given more partitions when sources are added
  # (Alter), whatever kafka.create_topics says.
  allow --operation Read --operation Describe --operation Create --operation Alter \
    --topic "$COORDINATION_TOPIC"
fi

if [ "${ALLOW_CREATE_TOPICS:-0}" = 1 ]; then
  # Only with kafka.create_topics = true; creating the topics ahead is recommended instead.
  for topic in "$TOPIC" "$DEAD_LETTER_TOPIC" "$STATE_TOPIC"; do
    allow --operation Create --topic "$topic"
  done
fi

if [ "${IDEMPOTENT_WRITE:-0}" = 1 ]; then
  # Brokers older than Kafka 2.8 require it of idempotent producers; newer ones accept Write on
  # a topic (KIP-679), and a transactional producer is authorized by its transactional id.
  allow --operation IdempotentWrite --cluster
fi
