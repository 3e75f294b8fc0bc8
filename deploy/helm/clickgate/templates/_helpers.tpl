{{- define "clickgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "clickgate.fullname" -}}
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

{{- define "clickgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "clickgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "clickgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clickgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The Secret the pods read: existingSecret, or the one this chart creates. */}}
{{- define "clickgate.secretName" -}}
{{- default (printf "%s-secrets" (include "clickgate.fullname" .)) .Values.existingSecret }}
{{- end }}

{{/* TLS on the main listener: the probes then speak HTTPS. */}}
{{- define "clickgate.tls" -}}
{{- $server := .Values.config.server | default dict }}
{{- $tls := $server.tls | default dict }}
{{- if $tls.cert_file }}true{{ end }}
{{- end }}

{{/*
clickgate.yaml: .Values.config with the listeners set from the chart's ports,
after refusing literal secrets (they belong in the Secret, referenced as ${ENV}).
*/}}
{{- define "clickgate.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $check := list }}
{{- with $cfg.broker }}{{ $check = append $check (list "broker.seal_key" .seal_key) }}{{ end }}
{{- with $cfg.clickhouse }}
{{- $check = append $check (list "clickhouse.ticket_secret" .ticket_secret) }}
{{- $check = append $check (list "clickhouse.password" .password) }}
{{- range $i, $a := .accounts }}{{ $check = append $check (list (printf "clickhouse.accounts[%d].password" $i) $a.password) }}{{ end }}
{{- end }}
{{- with $cfg.audit }}{{ with .clickhouse }}{{ $check = append $check (list "audit.clickhouse.password" .password) }}{{ end }}{{ end }}
{{- range $name, $p := ($cfg.token_processors | default dict) }}
{{- $check = append $check (list (printf "token_processors.%s.client_secret" $name) $p.client_secret) }}
{{- end }}
{{- range $check }}
{{- $v := index . 1 | default "" | toString }}
{{- if and $v (not (regexMatch "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" $v)) }}
{{- fail (printf "config.%s holds a literal value: put it into the Secret (secret.env or existingSecret) and write ${ENV_NAME} in config" (index . 0)) }}
{{- end }}
{{- end }}
{{- $server := $cfg.server | default dict }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.containerPort)) }}
{{- if .Values.metrics.port }}
{{- $_ := set $server "metrics_listen" (printf "0.0.0.0:%d" (int .Values.metrics.port)) }}
{{- end }}
{{- $_ := set $cfg "server" $server }}
{{- toYaml $cfg }}
{{- end }}
