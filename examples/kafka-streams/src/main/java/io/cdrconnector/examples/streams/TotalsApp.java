package io.cdrconnector.examples.streams;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.Comparator;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.state.Stores;

/**
 * Calls and billed seconds per extension per hour of dial time, from the connector's topic.
 *
 * <p>A bounded run: it notes where the topic ends now ({@link TopicTail}), runs the topology until
 * every partition has been processed that far ({@link Progress}), prints the totals from the
 * store ({@link TotalsReport}) and exits 0. Exit 1 with a message on stderr when the run fails
 * (an undecodable value, no broker, the timeout), 2 for a bad command line.
 */
public final class TotalsApp {
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);
    private static final long WAIT_MILLIS = 100;

    private TotalsApp() {}

    public static void main(String[] args) {
        if (Options.wantsHelp(args)) {
            System.out.println(Options.USAGE);
            return;
        }
        Options options;
        try {
            options = Options.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("cdr-streams-totals: " + e.getMessage() + "\n" + Options.USAGE);
            System.exit(2);
            return;
        }
        try {
            System.out.println(TotalsReport.json(run(options)));
        } catch (RuntimeException e) {
            System.err.println("cdr-streams-totals: " + describe(e));
            System.exit(1);
        }
    }

    static Map<ExtensionHour, Totals> run(Options options) {
        Instant deadline = Instant.now().plus(options.timeout());
        Map<Integer, Long> last =
                TopicTail.lastRecordOffsets(clientConfig(options), options.topic(), options.timeout());
        Progress progress = new Progress();
        Path stateDir = temporaryStateDir();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        KafkaStreams streams =
                new KafkaStreams(topology(options, progress), streamsConfig(options, stateDir));
        streams.setUncaughtExceptionHandler(e -> {
            failure.set(e);
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        try {
            streams.start();
            return awaitTotals(streams, progress, last, failure, deadline);
        } finally {
            streams.close(CLOSE_TIMEOUT);
            deleteTree(stateDir);
        }
    }

    static Topology topology(Options options, Progress progress) {
        RegistrySchemas registry =
                options.registryUrl() == null ? null : new RegistrySchemas(options.registryUrl());
        Serde<GenericRecord> values = Serdes.serdeFrom(
                (topic, record) -> {
                    throw new UnsupportedOperationException("this application writes no records");
                },
                new CdrValueDeserializer(CdrSchema.load(), registry));
        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(Stores.keyValueStoreBuilder(
                Stores.inMemoryKeyValueStore(TotalsProcessor.STORE),
                ExtensionHour.serde(),
                Totals.serde()));
        builder.stream(options.topic(), Consumed.with(Serdes.ByteArray(), values))
                .process(() -> new TotalsProcessor(progress), TotalsProcessor.STORE);
        return builder.build();
    }

    private static Properties clientConfig(Options options) {
        Properties config = new Properties();
        config.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, options.bootstrapServers());
        return config;
    }

    private static Properties streamsConfig(Options options, Path stateDir) {
        Properties config = clientConfig(options);
        config.put(StreamsConfig.APPLICATION_ID_CONFIG, options.applicationId());
        config.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        // Only committed transactions: the connector's aborted attempts are never counted.
        config.put(
                StreamsConfig.consumerPrefix(ConsumerConfig.ISOLATION_LEVEL_CONFIG), "read_committed");
        return config;
    }

    private static Map<ExtensionHour, Totals> awaitTotals(
            KafkaStreams streams,
            Progress progress,
            Map<Integer, Long> last,
            AtomicReference<Throwable> failure,
            Instant deadline) {
        while (true) {
            Throwable failed = failure.get();
            if (failed != null) {
                throw new IllegalStateException(describe(failed), failed);
            }
            if (streams.state() == KafkaStreams.State.RUNNING && progress.reached(last)) {
                try {
                    return TotalsReport.read(streams);
                } catch (InvalidStateStoreException e) {
                    // a rebalance moved the store under us; it is back once RUNNING again
                }
            }
            if (Instant.now().isAfter(deadline)) {
                throw new IllegalStateException("the topic was not read to its end within the"
                        + " timeout (state " + streams.state() + "): raise --timeout-seconds");
            }
            sleep();
        }
    }

    /**
     * What went wrong, for the user: this application's own decoding message where there is one
     * (Kafka Streams wraps it twice), else the innermost cause's.
     */
    private static String describe(Throwable error) {
        Throwable cause = error;
        while (cause.getCause() != null && cause.getCause() != cause) {
            if (cause instanceof SerializationException) {
                return cause.getMessage();
            }
            cause = cause.getCause();
        }
        String message = cause.getMessage();
        return message == null ? cause.toString() : message;
    }

    private static void sleep() {
        try {
            Thread.sleep(WAIT_MILLIS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }

    private static Path temporaryStateDir() {
        try {
            return Files.createTempDirectory("cdr-streams-totals-");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create a state directory", e);
        }
    }

    private static void deleteTree(Path root) {
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
        } catch (IOException e) {
            System.err.println("cdr-streams-totals: could not remove " + root + ": " + e);
        }
    }
}
