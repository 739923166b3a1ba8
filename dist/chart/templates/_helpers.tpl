{{/* The chart's name, as labels carry it. */}}
{{- define "upload-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: for a release called upload-operator it is
upload-operator, so the objects are named as config/ names them.
*/}}
{{- define "upload-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels: name as config/ selects, and the release so that two releases never share pods. */}}
{{- define "upload-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "upload-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "upload-operator.labels" -}}
{{ include "upload-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "upload-operator.serviceAccountName" -}}
{{ include "upload-operator.fullname" . }}-controller-manager
{{- end }}

{{- define "upload-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "upload-operator.envSecretName" -}}
{{- default (printf "%s-env" (include "upload-operator.fullname" .)) .Values.envSecret.name }}
{{- end }}

{{/*
The names the operator's certificate is valid for: both Services, short and
fully qualified.
*/}}
{{- define "upload-operator.tlsDNSNames" -}}
{{- $f := include "upload-operator.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- printf "%s-upload-api.%s.svc,%s-upload-api.%s.svc.cluster.local,%s-metrics.%s.svc,%s-metrics.%s.svc.cluster.local" $f $ns $f $ns $f $ns $f $ns }}
{{- end }}

{{- define "upload-operator.caConfigMapName" -}}
{{- default (printf "%s-ca" (include "upload-operator.fullname" .)) .Values.tls.caConfigMap }}
{{- end }}

{{- define "upload-operator.tlsSecretName" -}}
{{- default (printf "%s-upload-api-tls" (include "upload-operator.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/*
One env var of the manager container (indented for its env list) from a
value, left out when the value is empty so that the operator's default
applies. Lists are comma-joined.
*/}}
{{- define "upload-operator.envVar" -}}
{{- $v := index . 1 }}
{{- if kindIs "slice" $v }}{{ $v = join "," $v }}{{ end }}
{{- if kindIs "float64" $v }}{{ $v = int64 $v }}{{ end }}
{{- if $v }}
{{- printf "- name: %s\n  value: %s" (index . 0) (toString $v | quote) | nindent 12 }}
{{- end }}
{{- end }}
