package io.cdrconnector.examples.streams;

import java.nio.ByteBuffer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/** Calls and their billed (talk) seconds. */
record Totals(long calls, long billedSeconds) {
    static final Totals NONE = new Totals(0, 0);

    Totals plus(Totals other) {
        return new Totals(calls + other.calls, billedSeconds + other.billedSeconds);
    }

    /** Two big-endian longs. */
    static Serde<Totals> serde() {
        return Serdes.serdeFrom(
                (topic, totals) -> ByteBuffer.allocate(2 * Long.BYTES)
                        .putLong(totals.calls())
                        .putLong(totals.billedSeconds())
                        .array(),
                (topic, bytes) -> {
                    ByteBuffer buffer = ByteBuffer.wrap(bytes);
                    return new Totals(buffer.getLong(), buffer.getLong());
                });
    }
}
