{{/*
The objects' name: the release name when it contains the chart's name,
else <release>-billing-worker (at most 63 characters).
*/}}
{{- define "billing-worker.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The console's name: billing-console for the release billing-worker. */}}
{{- define "billing-worker.consoleName" -}}
{{- printf "%s-console" (include "billing-worker.fullname" . | trimSuffix "-worker") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; the Helm ones on top of the kustomize base's. */}}
{{- define "billing-worker.commonLabels" -}}
app.kubernetes.io/part-of: azbilling
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "billing-worker.labels" -}}
app.kubernetes.io/name: {{ include "billing-worker.fullname" . }}
{{ include "billing-worker.commonLabels" . }}
{{- end -}}

{{- define "billing-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "billing-worker.fullname" . }}
{{- end -}}

{{- define "billing-worker.consoleSelectorLabels" -}}
app.kubernetes.io/name: {{ include "billing-worker.consoleName" . }}
{{- end -}}

{{/* The image, pinned by digest when one is given. */}}
{{- define "billing-worker.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The NATS URL: nats.url, or the NATS release's client Service. */}}
{{- define "billing-worker.natsURL" -}}
{{- $url := .Values.nats.url | default (printf "nats://%s.%s.svc.cluster.local:%v" .Values.nats.release .Values.nats.namespace (int .Values.nats.port)) -}}
{{- if .Values.nats.tls.enabled -}}
{{- $url = replace "nats://" "tls://" $url -}}
{{- end -}}
{{- $url -}}
{{- end -}}

{{/* Where the NATS credentials and CA are mounted. */}}
{{- define "billing-worker.natsCredsDir" -}}/var/run/secrets/billing/nats{{- end -}}
{{- define "billing-worker.natsCADir" -}}/var/run/secrets/billing/nats-ca{{- end -}}

{{/* The health listener's port, from config.healthAddr ("host:port"). */}}
{{- define "billing-worker.healthPort" -}}
{{- splitList ":" .Values.config.healthAddr | last -}}
{{- end -}}

{{/*
One setting's value as the worker parses it: YAML numbers arrive as
float64 (1073741824 would print as 1.073741824e+09), so integers are
printed as integers.
*/}}
{{- define "billing-worker.settingValue" -}}
{{- if kindIs "float64" . -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* The worker's ConfigMap data; its checksum rolls the pods on a change. */}}
{{- define "billing-worker.configData" -}}
BILLING_NATS_URL: {{ include "billing-worker.natsURL" . | quote }}
BILLING_NATS_CREDS: {{ printf "%s/%s" (include "billing-worker.natsCredsDir" .) .Values.nats.credentials.key | quote }}
{{- if .Values.nats.tls.enabled }}
BILLING_NATS_CA: {{ printf "%s/%s" (include "billing-worker.natsCADir" .) .Values.nats.tls.caKey | quote }}
{{- end }}
BILLING_AZURE_CREDENTIAL: {{ .Values.azure.credential | quote }}
{{- range $key, $value := .Values.config }}
{{- $text := include "billing-worker.settingValue" $value }}
{{- if ne $text "" }}
{{ printf "BILLING_%s" ($key | snakecase | upper) }}: {{ $text | quote }}
{{- end }}
{{- end }}
OTEL_SERVICE_NAME: {{ .Values.otel.serviceName | quote }}
{{- with .Values.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
OTEL_EXPORTER_OTLP_PROTOCOL: {{ .Values.otel.protocol | quote }}
OTEL_METRICS_EXPORTER: {{ .Values.otel.metricsExporter | quote }}
OTEL_LOGS_EXPORTER: {{ .Values.otel.logsExporter | quote }}
OTEL_TRACES_SAMPLER: {{ .Values.otel.tracesSampler | quote }}
OTEL_RESOURCE_ATTRIBUTES: {{ .Values.otel.resourceAttributes | quote }}
{{- end -}}

{{/* The pod and container hardening of the kustomize base (PSS restricted). */}}
{{- define "billing-worker.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "billing-worker.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
  - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}
