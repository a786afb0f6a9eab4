package io.cdrconnector.examples.streams;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/** The command line: {@code --name value} pairs, every one named in {@link #USAGE}. */
record Options(
        String bootstrapServers,
        String topic,
        String applicationId,
        String registryUrl,
        Duration timeout) {

    static final String USAGE = """
            usage: run.sh --bootstrap-servers HOST:PORT [--topic cdr.calls]
                          [--application-id cdr-streams-totals] [--registry-url URL]
                          [--timeout-seconds 120]
            Reads the topic with read_committed up to its last committed record at start,
            prints calls and billed seconds per extension per hour (UTC) as JSON on stdout.
            --registry-url: the Confluent-compatible API base of the schema registry, needed
            when the connector writes Confluent-framed values.""";

    private static final Set<String> NAMES = Set.of(
            "--bootstrap-servers", "--topic", "--application-id", "--registry-url",
            "--timeout-seconds");

    /** Whether the user asked for {@link #USAGE}. */
    static boolean wantsHelp(String[] args) {
        return args.length == 1 && (args[0].equals("--help") || args[0].equals("-h"));
    }

    /** Throws IllegalArgumentException with a message for the user. */
    static Options parse(String[] args) {
        Map<String, String> given = new HashMap<>();
        for (int i = 0; i < args.length; i += 2) {
            if (!NAMES.contains(args[i])) {
                throw new IllegalArgumentException("unknown option " + args[i]);
            }
            if (i + 1 == args.length) {
                throw new IllegalArgumentException(args[i] + " needs a value");
            }
            given.put(args[i], args[i + 1]);
        }
        String bootstrap = given.get("--bootstrap-servers");
        if (bootstrap == null) {
            throw new IllegalArgumentException("--bootstrap-servers is required");
        }
        return new Options(
                bootstrap,
                given.getOrDefault("--topic", "cdr.calls"),
                given.getOrDefault("--application-id", "cdr-streams-totals"),
                given.get("--registry-url"),
                Duration.ofSeconds(seconds(given.getOrDefault("--timeout-seconds", "120"))));
    }

    private static long seconds(String text) {
        try {
            long value = Long.parseLong(text);
            if (value > 0) {
                return value;
            }
        } catch (NumberFormatException e) {
            // reported below, with the option's name
        }
        throw new IllegalArgumentException("--timeout-seconds must be a whole number above 0, got " + text);
    }
}
