{{/* Names and labels. */}}
{{- define "flowreg.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flowreg.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "flowreg.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flowreg.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flowreg.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The environment variable that carries a store's (or its embedder's) API key. */}}
{{- define "flowreg.keyEnv" -}}
{{- printf "FLOWREG_%s_API_KEY" (. | upper | replace "-" "_") -}}
{{- end -}}

{{/* The operator's configuration file (no secrets: keys are named by environment variable). */}}
{{- define "flowreg.config" -}}
stores:
{{- range $name, $store := .Values.stores }}
  {{ $name }}:
    location: {{ $store.location | quote }}
    collection: {{ $store.collection | default "flowreg_flows" | quote }}
    {{- if $store.apiKey }}
    apiKeyEnv: {{ include "flowreg.keyEnv" (printf "store-%s" $name) }}
    {{- end }}
    {{- with $store.batchSize }}
    batchSize: {{ . }}
    {{- end }}
    {{- with $store.pageSize }}
    pageSize: {{ . }}
    {{- end }}
    {{- if and $store.grpcPort (regexMatch "^https?://" (toString $store.location)) }}
    grpcPort: {{ $store.grpcPort }}
    {{- end }}
    {{- with $store.timeout }}
    timeout: {{ . }}
    {{- end }}
    {{- with $store.cluster }}
    cluster: {{ toJson . }}
    {{- end }}
    embedder:
      {{- $emb := $store.embedder | default (dict "kind" "hashing") }}
      kind: {{ $emb.kind }}
      {{- range $key := list "dimension" "url" "model" "batchSize" "timeout" "maxRetries" }}
      {{- if hasKey $emb $key }}
      {{ $key }}: {{ index $emb $key | toJson }}
      {{- end }}
      {{- end }}
      {{- if $emb.apiKey }}
      apiKeyEnv: {{ include "flowreg.keyEnv" (printf "embedder-%s" $name) }}
      {{- else if eq $emb.kind "openai" }}
      apiKeyEnv: FLOWREG_NO_API_KEY
      {{- end }}
{{- end }}
driftCheckSeconds: {{ .Values.driftCheckSeconds }}
deepCheckInterval: {{ .Values.deepCheckInterval | quote }}
concurrentSyncs: {{ .Values.concurrentSyncs }}
{{- end -}}
