package io.cdrconnector.examples.streams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;

/**
 * Writer schemas of Confluent-framed values, fetched by id from a Confluent-compatible registry
 * ({@code GET <base>/schemas/ids/<id>}) and kept: an id names one schema forever, so each is
 * fetched once per process.
 */
final class RegistrySchemas {
    private static final Duration TIMEOUT = Duration.ofSeconds(10);

    private final String baseUrl;
    private final HttpClient http =
            HttpClient.newBuilder().connectTimeout(TIMEOUT).build();
    private final ObjectMapper json = new ObjectMapper();
    private final Map<Integer, Schema> byId = new ConcurrentHashMap<>();

    RegistrySchemas(String baseUrl) {
        this.baseUrl = baseUrl.endsWith("/") ? baseUrl : baseUrl + "/";
    }

    Schema byId(int id) {
        return byId.computeIfAbsent(id, this::fetch);
    }

    private Schema fetch(int id) {
        URI uri = URI.create(baseUrl + "schemas/ids/" + id);
        HttpResponse<String> response;
        try {
            response = http.send(
                    HttpRequest.newBuilder(uri).timeout(TIMEOUT).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new IllegalStateException("schema registry " + uri + " cannot be reached: " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while fetching " + uri, e);
        }
        if (response.statusCode() != 200) {
            throw new IllegalStateException(
                    "schema registry answered " + response.statusCode() + " for " + uri
                            + " (is --registry-url the registry the connector writes to?): "
                            + response.body());
        }
        return parse(uri, response.body());
    }

    private Schema parse(URI uri, String body) {
        try {
            JsonNode schema = json.readTree(body).path("schema");
            if (!schema.isTextual()) {
                throw new IllegalStateException(uri + " answered without a \"schema\": " + body);
            }
            return new Schema.Parser().parse(schema.asText());
        } catch (IOException e) {
            throw new IllegalStateException(uri + " answered with something that is not JSON", e);
        }
    }
}
