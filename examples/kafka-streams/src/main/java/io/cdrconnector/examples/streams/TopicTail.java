package io.cdrconnector.examples.streams;

import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Where a bounded run ends: per partition, the offset of the last committed record the topic
 * holds now (-1 for a partition without one).
 *
 * <p>The end offset alone does not say it: with {@code read_committed} it is the last stable
 * offset, and the connector's transactions leave their commit markers (offsets that are no
 * record) and possibly aborted records just below it. So the tail of each partition is read
 * with {@code read_committed}, a window at a time going back from the end, until a record is
 * found.
 */
final class TopicTail {
    private static final int FIRST_WINDOW = 1000;
    private static final Duration POLL = Duration.ofMillis(200);

    private final KafkaConsumer<byte[], byte[]> consumer;
    private final Instant deadline;

    private TopicTail(KafkaConsumer<byte[], byte[]> consumer, Duration timeout) {
        this.consumer = consumer;
        this.deadline = Instant.now().plus(timeout);
    }

    static Map<Integer, Long> lastRecordOffsets(Properties client, String topic, Duration timeout) {
        Properties config = new Properties();
        config.putAll(client);
        config.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        // A mistyped --topic must be an error, not a new empty topic on a lenient broker.
        config.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(
                config, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            return new TopicTail(consumer, timeout).lastRecordOffsets(topic);
        }
    }

    private Map<Integer, Long> lastRecordOffsets(String topic) {
        List<PartitionInfo> partitions = consumer.partitionsFor(topic, remaining());
        if (partitions == null || partitions.isEmpty()) {
            throw new IllegalStateException("topic " + topic + " does not exist (or this client may"
                    + " not describe it): check --topic and --bootstrap-servers");
        }
        List<TopicPartition> all =
                partitions.stream().map(p -> new TopicPartition(topic, p.partition())).toList();
        Map<TopicPartition, Long> begin = consumer.beginningOffsets(all, remaining());
        Map<TopicPartition, Long> end = consumer.endOffsets(all, remaining());
        Map<Integer, Long> last = new HashMap<>();
        for (TopicPartition partition : all) {
            last.put(partition.partition(), lastBelow(partition, begin.get(partition), end.get(partition)));
        }
        return last;
    }

    private long lastBelow(TopicPartition partition, long begin, long end) {
        consumer.assign(List.of(partition));
        long window = FIRST_WINDOW;
        for (long to = end; to > begin; to = Math.max(begin, to - window), window *= 2) {
            long from = Math.max(begin, to - window);
            long found = lastIn(partition, from, to);
            if (found >= 0) {
                return found;
            }
        }
        return -1;
    }

    /** The last committed record's offset in [from, to), or -1. */
    private long lastIn(TopicPartition partition, long from, long to) {
        consumer.seek(partition, from);
        long found = -1;
        while (consumer.position(partition, remaining()) < to) {
            for (ConsumerRecord<byte[], byte[]> record : consumer.poll(POLL)) {
                if (record.offset() < to) {
                    found = Math.max(found, record.offset());
                }
            }
            remaining();
        }
        return found;
    }

    private Duration remaining() {
        Duration left = Duration.between(Instant.now(), deadline);
        if (left.isNegative() || left.isZero()) {
            throw new IllegalStateException("reading the end of the topic took too long: is the"
                    + " broker reachable? (--timeout-seconds)");
        }
        return left;
    }
}
