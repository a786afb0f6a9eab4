package io.cdrconnector.examples.streams;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/** The highest offset processed per partition, written by the stream thread, read by main. */
final class Progress {
    private final Map<Integer, Long> highest = new ConcurrentHashMap<>();

    void processed(int partition, long offset) {
        highest.merge(partition, offset, Math::max);
    }

    /** Whether every partition has been processed up to (and including) its given offset. */
    boolean reached(Map<Integer, Long> lastOffsets) {
        return lastOffsets.entrySet().stream()
                .allMatch(last -> highest.getOrDefault(last.getKey(), -1L) >= last.getValue());
    }
}
