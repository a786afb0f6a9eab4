package io.cdrconnector.examples.streams;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;

/**
 * Reads a value of the connector's topic in either of its framings, told apart by the first
 * byte, into a record of the connector's schema:
 *
 * <ul>
 *   <li>Avro single-object encoding ({@code C3 01}, the writer schema's 8-byte fingerprint, the
 *       body): Avro's own {@link BinaryMessageDecoder}, which refuses a fingerprint it does not
 *       know.
 *   <li>Confluent framing ({@code 00}, a 4-byte big-endian schema id, the body): the writer schema
 *       comes from the registry by id, and the body is resolved against the connector's schema.
 * </ul>
 */
final class CdrValueDeserializer implements Deserializer<GenericRecord> {
    private static final byte SINGLE_OBJECT_MAGIC = (byte) 0xC3;
    private static final byte CONFLUENT_MAGIC = 0;
    private static final int CONFLUENT_HEADER = 5;

    private final Schema readerSchema;
    private final BinaryMessageDecoder<GenericRecord> singleObject;
    private final RegistrySchemas registry;
    private final Map<Integer, GenericDatumReader<GenericRecord>> readers = new ConcurrentHashMap<>();

    /** {@code registry} may be null when the topic holds single-object values only. */
    CdrValueDeserializer(Schema readerSchema, RegistrySchemas registry) {
        this.readerSchema = readerSchema;
        this.singleObject = new BinaryMessageDecoder<>(GenericData.get(), readerSchema);
        this.registry = registry;
    }

    @Override
    public GenericRecord deserialize(String topic, byte[] value) {
        if (value == null || value.length == 0) {
            throw new SerializationException("an empty value in " + topic + " is not a record");
        }
        try {
            if (value[0] == SINGLE_OBJECT_MAGIC) {
                return singleObject.decode(value);
            }
            if (value[0] == CONFLUENT_MAGIC && value.length >= CONFLUENT_HEADER) {
                return decodeConfluent(value);
            }
        } catch (IOException | RuntimeException e) {
            throw new SerializationException("cannot decode a value of " + topic + ": " + e.getMessage(), e);
        }
        throw new SerializationException(String.format(
                "a value of %s starts with 0x%02X: neither Avro single-object encoding (C3 01) nor"
                        + " Confluent framing (00); is this the connector's records topic?",
                topic, value[0]));
    }

    private GenericRecord decodeConfluent(byte[] value) throws IOException {
        int schemaId = ByteBuffer.wrap(value, 1, 4).getInt();
        if (registry == null) {
            throw new IllegalStateException("the value is Confluent-framed (schema id " + schemaId
                    + "): pass --registry-url, the registry the connector writes to");
        }
        GenericDatumReader<GenericRecord> reader = readers.computeIfAbsent(
                schemaId, id -> new GenericDatumReader<>(registry.byId(id), readerSchema));
        BinaryDecoder body = DecoderFactory.get()
                .binaryDecoder(value, CONFLUENT_HEADER, value.length - CONFLUENT_HEADER, null);
        return reader.read(null, body);
    }
}
