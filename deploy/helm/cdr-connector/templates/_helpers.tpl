{{/* Names: <release>-cdr-connector unless the release name already contains the chart name. */}}
{{- define "cdr-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cdr-connector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cdr-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cdr-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdr-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cdr-connector.labels" -}}
helm.sh/chart: {{ include "cdr-connector.chart" . }}
{{ include "cdr-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ include "cdr-connector.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: connector
app.kubernetes.io/part-of: cdr-connector
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if not .Values.config.sources }}
cdr-connector/source: {{ include "cdr-connector.sourceName" . | quote }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cdr-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cdr-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cdr-connector.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "cdr-connector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "cdr-connector.imageTag" .) }}
{{- end }}
{{- end }}

{{/* The source's name; the connector's own default when config.source.name is not set. */}}
{{- define "cdr-connector.sourceName" -}}
{{- (.Values.config.source | default dict).name | default "default" }}
{{- end }}

{{/* The listener port of /metrics, /livez and /readyz (config.http.port). */}}
{{- define "cdr-connector.httpPort" -}}
{{- (.Values.config.http | default dict).port | default 9464 | int }}
{{- end }}

{{/* The shutdown bound in whole seconds, rounded up (the connector's default is 30). */}}
{{- define "cdr-connector.shutdownSeconds" -}}
{{- .Values.config.shutdown_timeout_seconds | default 30 | float64 | ceil | int }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the kubelet sends SIGKILL this long after SIGTERM. The connector
stops its pipeline within shutdown_timeout_seconds and then closes the producer (at most 5 s more)
and its listener, so the grace period must exceed the bound by at least 5 s; the default adds 15.
*/}}
{{- define "cdr-connector.terminationGracePeriodSeconds" -}}
{{- $bound := include "cdr-connector.shutdownSeconds" . | int }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $bound 15 }}
{{- else }}
{{- $grace := .Values.terminationGracePeriodSeconds | int }}
{{- if lt $grace (add $bound 5) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least config.shutdown_timeout_seconds + 5 (%d): the kubelet would kill the connector before it has committed and closed its producer" $grace (add $bound 5)) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/* The ports of a "host:port,host:port" list as a JSON array (9092 where a port is missing). */}}
{{- define "cdr-connector.serverPorts" -}}
{{- $ports := list }}
{{- range splitList "," . }}
{{- $port := regexFind ":[0-9]+$" (trim .) | trimPrefix ":" | default "9092" | int }}
{{- $ports = append $ports $port }}
{{- end }}
{{- $ports | uniq | toJson }}
{{- end }}

{{/* The port of a URL: the one it names, or 443 for https and 80 otherwise. */}}
{{- define "cdr-connector.urlPort" -}}
{{- $url := urlParse . }}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" }}
{{- if $port }}
{{- $port }}
{{- else if eq $url.scheme "https" }}
{{- 443 }}
{{- else }}
{{- 80 }}
{{- end }}
{{- end }}

{{/*
A NetworkPolicy peer of pods in a namespace: `namespaceSelector` when not empty, otherwise the
namespace named by `namespace`; narrowed by `podSelector` when not empty.
*/}}
{{- define "cdr-connector.namespacePeer" -}}
{{- $peer := dict "namespaceSelector" (.namespaceSelector | default (dict "matchLabels" (dict "kubernetes.io/metadata.name" .namespace))) }}
{{- with .podSelector }}
{{- $_ := set $peer "podSelector" . }}
{{- end }}
{{- toYaml $peer }}
{{- end }}

{{/*
One NetworkPolicy egress rule (a YAML list item) from a target of values.networkPolicy: its
cidrs as ipBlocks and its namespace/pod selectors as one more peer; no peer at all allows any
address. Its ports, or the given default ports when it lists none, over TCP.
*/}}
{{- define "cdr-connector.egressRule" -}}
{{- $peers := list }}
{{- range .target.cidrs }}
{{- $peers = append $peers (dict "ipBlock" (dict "cidr" .)) }}
{{- end }}
{{- $selectors := dict }}
{{- with .target.namespaceSelector }}
{{- $_ := set $selectors "namespaceSelector" . }}
{{- end }}
{{- with .target.podSelector }}
{{- $_ := set $selectors "podSelector" . }}
{{- end }}
{{- if $selectors }}
{{- $peers = append $peers $selectors }}
{{- end }}
{{- $ports := list }}
{{- range (.target.ports | default .ports) }}
{{- $ports = append $ports (dict "port" (int .) "protocol" "TCP") }}
{{- end }}
{{- $rule := dict "ports" $ports }}
{{- if $peers }}
{{- $_ := set $rule "to" $peers }}
{{- end }}
{{- list $rule | toYaml }}
{{- end }}

{{/* Where the credentials Secret is mounted, and the file the connector reads the key from. */}}
{{- define "cdr-connector.accesskeyFile" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.credentials.mountPath) .Values.credentials.accesskeyKey }}
{{- end }}

{{/*
Integral numbers in Helm values are float64 (YAML goes through JSON); TOML would print them as
9464.0. This turns every integral float of a map, in place and recursively, into an int64.
*/}}
{{- define "cdr-connector.intify" -}}
{{- $map := . }}
{{- range $key, $value := $map }}
{{- if and (eq (kindOf $value) "float64") (eq $value (floor $value)) }}
{{- $_ := set $map $key (int64 $value) }}
{{- else if kindIs "map" $value }}
{{- include "cdr-connector.intify" $value }}
{{- else if kindIs "slice" $value }}
{{- $items := list }}
{{- range $value }}
{{- if and (eq (kindOf .) "float64") (eq . (floor .)) }}
{{- $items = append $items (int64 .) }}
{{- else }}
{{- if kindIs "map" . }}
{{- include "cdr-connector.intify" . }}
{{- end }}
{{- $items = append $items . }}
{{- end }}
{{- end }}
{{- $_ := set $map $key $items }}
{{- end }}
{{- end }}
{{- end }}

{{/*
settings.toml: values.config with what the chart owns filled in: the access key file of the
mounted Secret (of each source's, with config.sources, which then take config.source's shared
keys: see _sources.tpl), and the listener on every interface (the kubelet probes the pod's IP).
*/}}
{{- define "cdr-connector.settingsToml" -}}
{{- $config := deepCopy .Values.config }}
{{- if .Values.config.sources }}
{{- $_ := set $config "sources" (include "cdr-connector.sources" . | fromJsonArray) }}
{{- $_ := unset $config "source" }}
{{- else }}
{{- $_ := unset $config "sources" }}
{{- $source := get $config "source" | default dict }}
{{- $_ := set $source "accesskey_file" (include "cdr-connector.accesskeyFile" .) }}
{{- $_ := set $config "source" $source }}
{{- end }}
{{- $http := get $config "http" | default dict }}
{{- $_ := set $http "host" (get $http "host" | default "0.0.0.0") }}
{{- $_ := set $http "port" (include "cdr-connector.httpPort" . | int) }}
{{- $_ := set $config "http" $http }}
{{- include "cdr-connector.intify" $config }}
{{- toToml $config }}
{{- end }}

{{/* Refuse what would break the connector's guarantees, with a message that says why. */}}
{{- define "cdr-connector.validate" -}}
{{- include "cdr-connector.validateSources" . }}
{{- if not .Values.credentials.existingSecret }}
{{- fail "credentials.existingSecret is required: the name of a Secret in the release's namespace whose key credentials.accesskeyKey (default \"accesskey\") holds the vendor access key (kubectl create secret generic cdr-vendor --from-literal=accesskey=...)" }}
{{- end }}
{{- $source := .Values.config.source | default dict }}
{{- if or (hasKey $source "accesskey") (hasKey $source "accesskey_file") }}
{{- fail "config.source.accesskey and config.source.accesskey_file are set by the chart from credentials.existingSecret: never put the access key in values (they end up in a ConfigMap)" }}
{{- end }}
{{- $kafka := .Values.config.kafka | default dict }}
{{- $avro := .Values.config.avro | default dict }}
{{- $maps := dict "kafka.client_config" ($kafka.client_config | default dict) "avro.schema_registry_config" ($avro.schema_registry_config | default dict) }}
{{- range $path, $map := $maps }}
{{- range $key, $_ := $map }}
{{- if regexMatch "(password|secret|passphrase|key\\.pem|user\\.info|auth\\.token)$" (lower $key) }}
{{- fail (printf "config.%s.%s must come from a Secret, never from values (they end up in a ConfigMap): remove it and pass it through env as CDR_%s__%s with valueFrom.secretKeyRef (see examples/values-production.yaml), or through envFrom" $path $key (replace "." "__" $path | upper) (upper $key)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not .Values.config.sources) (not $source.appid) (not .Values.credentials.appidKey) }}
{{- fail "config.source.appid is required (or credentials.appidKey to read it from the Secret)" }}
{{- end }}
{{- $_ := include "cdr-connector.terminationGracePeriodSeconds" . }}
{{- end }}
