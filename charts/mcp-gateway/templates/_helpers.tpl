{{/*
Chart name, overridable with .Values.nameOverride.
*/}}
{{- define "mcp-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, used for every object this chart creates. Truncated to 63
characters because some Kubernetes name fields are limited to that (DNS-1123 label).
If the release name already contains the chart name it is not repeated.
*/}}
{{- define "mcp-gateway.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "mcp-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels, on every object.
*/}}
{{- define "mcp-gateway.labels" -}}
helm.sh/chart: {{ include "mcp-gateway.chart" . }}
{{ include "mcp-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcp-gateway
{{- end }}

{{/*
Selector labels of the operator pods. They are immutable in a Deployment's selector, and
carry component=operator so that they can never match the gateway pods the operator creates.
*/}}
{{- define "mcp-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "mcp-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mcp-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image references; the tag defaults to the chart's appVersion so that chart and binaries
move together.
*/}}
{{- define "mcp-gateway.image" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{- /* A digest, when given, pins the image and the tag is not used. */ -}}
{{- define "mcp-gateway.operatorImage" -}}
{{- $i := .Values.operator.image }}
{{- include "mcp-gateway.image" (dict "repository" $i.repository "tag" ($i.tag | default .Chart.AppVersion) "digest" $i.digest) }}
{{- end }}

{{- define "mcp-gateway.sidecarImage" -}}
{{- $i := .Values.sidecar.image }}
{{- include "mcp-gateway.image" (dict "repository" $i.repository "tag" ($i.tag | default .Chart.AppVersion) "digest" $i.digest) }}
{{- end }}
