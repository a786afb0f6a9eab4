package io.cdrconnector.examples.streams;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Comparator;
import java.util.Map;
import java.util.TreeMap;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;

/**
 * The totals as JSON, read from this instance's stores (interactive queries):
 * {@code {"records": N, "totals": [{"extension", "hour", "calls", "billsec"}, ...]}}, sorted by
 * extension, then hour. A key found in several tasks' stores (calls without an extension) is
 * summed.
 */
final class TotalsReport {
    private static final Comparator<ExtensionHour> ORDER = Comparator
            .comparing(ExtensionHour::extension)
            .thenComparingLong(ExtensionHour::hourStartMillis);

    private TotalsReport() {}

    static Map<ExtensionHour, Totals> read(KafkaStreams streams) {
        ReadOnlyKeyValueStore<ExtensionHour, Totals> store = streams.store(
                StoreQueryParameters.fromNameAndType(
                        TotalsProcessor.STORE, QueryableStoreTypes.keyValueStore()));
        Map<ExtensionHour, Totals> merged = new TreeMap<>(ORDER);
        try (KeyValueIterator<ExtensionHour, Totals> all = store.all()) {
            while (all.hasNext()) {
                KeyValue<ExtensionHour, Totals> entry = all.next();
                merged.merge(entry.key, entry.value, Totals::plus);
            }
        }
        return merged;
    }

    static String json(Map<ExtensionHour, Totals> totals) {
        ObjectMapper mapper = new ObjectMapper();
        ObjectNode root = mapper.createObjectNode();
        root.put("records", totals.values().stream().mapToLong(Totals::calls).sum());
        ArrayNode rows = root.putArray("totals");
        totals.forEach((key, value) -> rows.addObject()
                .put("extension", key.extension())
                .put("hour", key.hour())
                .put("calls", value.calls())
                .put("billsec", value.billedSeconds()));
        return root.toString();
    }
}
