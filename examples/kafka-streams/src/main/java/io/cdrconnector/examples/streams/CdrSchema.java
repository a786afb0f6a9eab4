package io.cdrconnector.examples.streams;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import org.apache.avro.Schema;

/** The connector's record schema, schemas/cdr_record.avsc, which the build puts on the class path. */
final class CdrSchema {
    private static final String RESOURCE = "/cdr_record.avsc";

    private CdrSchema() {}

    static Schema load() {
        try (InputStream in = CdrSchema.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException(
                        RESOURCE + " is not on the class path: build with `mvn package`");
            }
            return new Schema.Parser().parse(in);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + RESOURCE, e);
        }
    }
}
