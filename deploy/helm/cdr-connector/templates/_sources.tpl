{{/*
Many accounts: config.sources (several vendor accounts in one release) and config.fleet (the
replicas sharing them through a Kafka consumer group).
*/}}

{{/* "true" when the replicas share the sources (config.fleet.enabled), empty otherwise. */}}
{{- define "cdr-connector.fleetEnabled" -}}
{{- if ((.Values.config.fleet | default dict).enabled) }}true{{ end }}
{{- end }}

{{/*
Each source of config.sources as the connector gets it, a JSON list: config.source's keys but
name and appid (what the sources share, say the vendor's api_url or the time zone) under the
item's own, and accesskey_file pointing at the source's mounted key.
*/}}
{{- define "cdr-connector.sources" -}}
{{- $shared := omit (.Values.config.source | default dict) "name" "appid" }}
{{- $sources := list }}
{{- range .Values.config.sources }}
{{- $source := mergeOverwrite (deepCopy $shared) (deepCopy .) }}
{{- $_ := set $source "accesskey_file" (include "cdr-connector.sourceKeyFile" (dict "root" $ "name" .name)) }}
{{- $sources = append $sources $source }}
{{- end }}
{{- toJson $sources }}
{{- end }}

{{/* Where the access key of source `name` is mounted (config.sources). */}}
{{- define "cdr-connector.sourceKeyFile" -}}
{{- printf "%s/%s/accesskey" (trimSuffix "/" .root.Values.credentials.mountPath) .name }}
{{- end }}

{{/*
The credentials volume's projections with config.sources, a YAML list: each Secret once, with
the key of every source it holds mounted as <name>/accesskey. A source reads key <name> of
credentials.existingSecret, unless credentials.sources names its own Secret (key
credentials.accesskeyKey there by default) or its own key.
*/}}
{{- define "cdr-connector.credentialProjections" -}}
{{- $bySecret := dict }}
{{- range .Values.config.sources }}
{{- $from := include "cdr-connector.sourceCredentials" (dict "root" $ "name" .name) | fromJson }}
{{- $items := get $bySecret $from.secret | default list }}
{{- $_ := set $bySecret $from.secret (append $items (dict "key" $from.key "path" (printf "%s/accesskey" .name))) }}
{{- end }}
{{- $projections := list }}
{{- range $secret := keys $bySecret | sortAlpha }}
{{- $projections = append $projections (dict "secret" (dict "name" $secret "items" (get $bySecret $secret))) }}
{{- end }}
{{- toYaml $projections }}
{{- end }}

{{/* The Secret and key holding source `name`'s access key, as JSON {"secret", "key"}. */}}
{{- define "cdr-connector.sourceCredentials" -}}
{{- $credentials := .root.Values.credentials }}
{{- $own := get ($credentials.sources | default dict) .name | default dict }}
{{- $secret := $own.existingSecret | default $credentials.existingSecret }}
{{- $key := $own.accesskeyKey | default (ternary $credentials.accesskeyKey .name (hasKey $own "existingSecret")) }}
{{- dict "secret" $secret "key" $key | toJson }}
{{- end }}

{{/*
The vendor API ports every source reaches, a JSON list: of each one's proxy_url when set, else
of its api_url (443 for https, 80 for http); the connector's default URL when neither is set.
*/}}
{{- define "cdr-connector.vendorPorts" -}}
{{- $sources := list (.Values.config.source | default dict) }}
{{- if .Values.config.sources }}
{{- $sources = include "cdr-connector.sources" . | fromJsonArray }}
{{- end }}
{{- $ports := list }}
{{- range $sources }}
{{- $url := .proxy_url | default .api_url | default "http://127.0.0.1:8080/" }}
{{- $ports = append $ports (include "cdr-connector.urlPort" $url | int) }}
{{- end }}
{{- $ports | uniq | toJson }}
{{- end }}

{{/* Refuse sources, replicas and budgets that would break the connector's guarantees. */}}
{{- define "cdr-connector.validateSources" -}}
{{- $fleet := include "cdr-connector.fleetEnabled" . }}
{{- $replicas := int .Values.replicaCount }}
{{- if and (gt $replicas 1) (not $fleet) }}
{{- fail (printf "replicaCount is %d, but config.fleet.enabled is not set: every pod would run every source, and a second pod with the same transactional.id fences the first, so they would take turns crashing instead of sharing work. Set config.fleet.enabled: true to share the sources among the replicas through a Kafka consumer group (replicas beyond the number of sources are hot standbys), or keep replicaCount at 1 (0 to stop it)." $replicas) }}
{{- end }}
{{- $budget := .Values.podDisruptionBudget }}
{{- if and $fleet $budget.enabled (not (kindIs "invalid" $budget.maxUnavailable)) (eq (toString $budget.maxUnavailable) "0") }}
{{- fail "podDisruptionBudget.maxUnavailable is 0 with config.fleet.enabled: that blocks every node drain for good, although the other replicas take over an evicted pod's sources within fleet.session_timeout_seconds. Use 1 (the default with a fleet)." }}
{{- end }}
{{- $names := list }}
{{- range $index, $source := .Values.config.sources }}
{{- if not $source.name }}
{{- fail (printf "config.sources[%d] has no name: every source needs its own (part of its transactional.id, its state key and its records)" $index) }}
{{- end }}
{{- if has $source.name $names }}
{{- fail (printf "config.sources names %s twice: each source needs a name of its own (two of the same would fence each other)" $source.name) }}
{{- end }}
{{- $names = append $names $source.name }}
{{- if not $source.appid }}
{{- fail (printf "config.sources[%d] (%s) has no appid: give each source its vendor appid" $index $source.name) }}
{{- end }}
{{- if or (hasKey $source "accesskey") (hasKey $source "accesskey_file") }}
{{- fail (printf "config.sources[%d] (%s): the access key comes from credentials (key %s of credentials.existingSecret, or credentials.sources.%s), never from values (they end up in a ConfigMap)" $index $source.name $source.name $source.name) }}
{{- end }}
{{- end }}
{{- range $name, $_ := .Values.credentials.sources | default dict }}
{{- if not (has $name $names) }}
{{- fail (printf "credentials.sources.%s names no source of config.sources (%s)" $name (join ", " $names)) }}
{{- end }}
{{- end }}
{{- end }}
