package io.cdrconnector.examples.streams;

import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * Adds each call to the totals of its extension and hour of dial time, in the task's store.
 *
 * <p>The totals are kept by the record's {@code extnumber} field, not by the message key, and in
 * the task of the partition the record came from, so nothing is repartitioned: an extension's
 * calls share its partition (the connector keys by extension), and the calls without one (empty
 * {@code extnumber}, keyed by the caller's number) are summed over the tasks when the totals are
 * read ({@link TotalsReport}). After the store is updated, the record's offset is handed to
 * {@link Progress}, so a reader that sees the offset also sees the call in the store.
 */
final class TotalsProcessor implements Processor<byte[], GenericRecord, Void, Void> {
    static final String STORE = "calls-per-extension-hour";

    private final Progress progress;
    private ProcessorContext<Void, Void> context;
    private KeyValueStore<ExtensionHour, Totals> store;

    TotalsProcessor(Progress progress) {
        this.progress = progress;
    }

    @Override
    public void init(ProcessorContext<Void, Void> context) {
        this.context = context;
        this.store = context.getStateStore(STORE);
    }

    @Override
    public void process(Record<byte[], GenericRecord> record) {
        GenericRecord call = record.value();
        ExtensionHour key = ExtensionHour.of(
                call.get("extnumber").toString(), (Long) call.get("starttime"));
        Totals before = store.get(key);
        Totals thisCall = new Totals(1, (Integer) call.get("billsec"));
        store.put(key, before == null ? thisCall : before.plus(thisCall));
        RecordMetadata source = context.recordMetadata().orElseThrow();
        progress.processed(source.partition(), source.offset());
    }
}
