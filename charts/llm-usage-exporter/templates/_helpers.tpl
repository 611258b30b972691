{{/* The chart's name, or nameOverride. */}}
{{- define "llm-usage-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-CHART (RELEASE alone when it holds the chart's name), or fullnameOverride:
at most 63 characters, a Service's name being a DNS label. */}}
{{- define "llm-usage-exporter.fullname" -}}
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

{{/* What selects this release's pods: never changes between upgrades. */}}
{{- define "llm-usage-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-usage-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "llm-usage-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "llm-usage-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The settings that cannot work together, refused before anything is made. */}}
{{- define "llm-usage-exporter.validate" -}}
{{- $engine := .Values.history.engine }}
{{- if and (eq $engine "sqlite") (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount is %d with history.engine sqlite: a SQLite history is one pod's file on a ReadWriteOnce volume, which other pods cannot share (and SQLite must never be on a network filesystem). Set history.engine postgresql and history.postgresql.url for several replicas, or replicaCount 1." (int .Values.replicaCount)) }}
{{- end }}
{{- if and (eq $engine "postgresql") (not .Values.history.postgresql.url) (not (include "llm-usage-exporter.externalConfig" .)) }}
{{- fail "history.engine postgresql needs history.postgresql.url (postgresql://USER@HOST:PORT/DB, no password: secrets.historyPasswordKey)" }}
{{- end }}
{{- if and .Values.config.existingConfigMap .Values.config.existingSecret }}
{{- fail "config.existingConfigMap and config.existingSecret: give one of the two" }}
{{- end }}
{{- if and (or .Values.secrets.env .Values.secrets.adminTokenKey .Values.secrets.historyPasswordKey) (not .Values.secrets.existingSecret) }}
{{- fail "secrets.env, secrets.adminTokenKey and secrets.historyPasswordKey are keys of secrets.existingSecret: name that Secret" }}
{{- end }}
{{- end }}

{{/* "true" when the config is a ConfigMap or Secret of the user's. */}}
{{- define "llm-usage-exporter.externalConfig" -}}
{{- if or .Values.config.existingConfigMap .Values.config.existingSecret }}true{{ end }}
{{- end }}

{{/* The inline config with what the chart decides: the history and the admin token's
variable. The listeners and the worker count are flags (deployment.yaml). */}}
{{- define "llm-usage-exporter.config" -}}
{{- $config := deepCopy (.Values.config.inline | default dict) }}
{{- $history := deepCopy (get $config "history" | default dict) }}
{{- $engine := .Values.history.engine }}
{{- if eq $engine "none" }}
{{- $_ := set $history "enabled" false }}
{{- else if eq $engine "postgresql" }}
{{- $_ := set $history "enabled" true }}
{{- $_ := set $history "url" .Values.history.postgresql.url }}
{{- $_ := unset $history "path" }}
{{- else }}
{{- $_ := set $history "enabled" true }}
{{- $_ := set $history "path" .Values.history.sqlite.path }}
{{- $_ := unset $history "url" }}
{{- end }}
{{- $_ := set $config "history" $history }}
{{- if .Values.secrets.adminTokenKey }}
{{- $_ := set $config "admin_token_env" "LLM_USAGE_ADMIN_TOKEN" }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The name of the object holding the config. */}}
{{- define "llm-usage-exporter.configName" -}}
{{- .Values.config.existingConfigMap | default .Values.config.existingSecret | default (include "llm-usage-exporter.fullname" .) }}
{{- end }}
