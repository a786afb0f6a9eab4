package io.cdrconnector.examples.streams;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/** What the totals are kept by: an extension and the UTC hour its calls were dialled in. */
record ExtensionHour(String extension, long hourStartMillis) {
    static final long HOUR_MILLIS = 3_600_000L;

    static ExtensionHour of(String extension, long startMillis) {
        return new ExtensionHour(extension, Math.floorDiv(startMillis, HOUR_MILLIS) * HOUR_MILLIS);
    }

    /** The hour as ISO-8601 UTC, e.g. {@code 2026-12-02T14:00:00Z}. */
    String hour() {
        return Instant.ofEpochMilli(hourStartMillis).toString();
    }

    /** The hour's 8 bytes, then the extension in UTF-8. */
    static Serde<ExtensionHour> serde() {
        return Serdes.serdeFrom(
                (topic, key) -> {
                    byte[] extension = key.extension().getBytes(StandardCharsets.UTF_8);
                    return ByteBuffer.allocate(Long.BYTES + extension.length)
                            .putLong(key.hourStartMillis())
                            .put(extension)
                            .array();
                },
                (topic, bytes) -> {
                    ByteBuffer buffer = ByteBuffer.wrap(bytes);
                    long hour = buffer.getLong();
                    return new ExtensionHour(
                            StandardCharsets.UTF_8.decode(buffer).toString(), hour);
                });
    }
}
