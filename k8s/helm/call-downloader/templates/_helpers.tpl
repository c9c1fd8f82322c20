{{/* Names ------------------------------------------------------------------------- */}}

{{- define "cd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cd.fullname" -}}
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

{{/* A component's resource name: <fullname>-<component>. Args: (list $ "component") */}}
{{- define "cd.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "cd.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cd.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "cd.componentName" (list . "secrets")) -}}
{{- end -}}

{{- define "cd.configName" -}}
{{- include "cd.componentName" (list . "config") -}}
{{- end -}}

{{/* Labels ------------------------------------------------------------------------ */}}

{{- define "cd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cd.labels" -}}
{{ include "cd.selectorLabels" . }}
app.kubernetes.io/part-of: call-downloader
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of one component. Args: (list $ "component") */}}
{{- define "cd.componentLabels" -}}
{{ include "cd.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "cd.componentSelector" -}}
{{ include "cd.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Images ------------------------------------------------------------------------ */}}

{{/* Args: (list $ "component") */}}
{{- define "cd.image" -}}
{{- $root := index . 0 -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $root.Values.image.prefix) (index . 1) ($root.Values.image.tag | default $root.Chart.AppVersion) -}}
{{- end -}}

{{/* Shared container settings ------------------------------------------------------ */}}

{{- define "cd.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The application's non-secret settings: the ConfigMap. */}}
{{- define "cd.appEnvFrom" -}}
- configMapRef:
    name: {{ include "cd.configName" . }}
{{- end -}}

{{/* The secret keys each component reads, and no others (a function's own list is its
`secrets` in values.yaml). DELIVERY_SECRET and ADMIN_PASSWORD are the migration's only: it
stores the destination's secret (deliver reads it from the database) and creates the first
admin. */}}
{{- define "cd.componentSecrets" -}}
{{- $keys := dict
  "relay" (list "DATABASE_URL" "RABBITMQ_URL")
  "dispatcher" (list "RABBITMQ_URL")
  "migrate" (list "DATABASE_URL" "ADMIN_PASSWORD" "DELIVERY_SECRET")
  "topology" (list "RABBITMQ_URL")
-}}
{{- toJson (index $keys .) -}}
{{- end -}}

{{/* Secret variables from the application Secret. Args: (list $ (list "KEY" ...)) */}}
{{- define "cd.secretEnv" -}}
{{- $root := index . 0 -}}
{{- range $key := index . 1 }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "cd.secretName" $root }}
      key: {{ $key }}
      {{- if eq $key "AI_API_KEY" }}
      optional: true
      {{- end }}
{{- end }}
{{- end -}}

{{/* Pod annotations that change with the settings, so a changed ConfigMap or Secret rolls
the pods (a new Knative revision). With secrets.existingSecret the chart cannot see the
Secret: change secrets.rolloutToken after rotating it. */}}
{{- define "cd.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum | trunc 16 | quote }}
checksum/secret: {{ printf "%s%s" (include (print .Template.BasePath "/secrets.yaml") .) .Values.secrets.rolloutToken | sha256sum | trunc 16 | quote }}
{{- end -}}

{{/* A function's in-cluster base URL: its Knative Service, or the external platform's.
Args: (list $ "ingest") */}}
{{- define "cd.functionUrl" -}}
{{- $root := index . 0 -}}
{{- if eq $root.Values.platform "knative" -}}
{{- printf "http://%s.%s.svc.cluster.local" (include "cd.componentName" (list $root (index . 1))) $root.Release.Namespace -}}
{{- else -}}
{{- $root.Values.externalFunctions.urlTemplate | replace "{name}" (index . 1) -}}
{{- end -}}
{{- end -}}

{{/* Network policy fragments --------------------------------------------------------- */}}

{{- define "cd.egressDns" -}}
- to:
{{- toYaml .Values.networkPolicy.dns | nindent 4 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}

{{/* One data service's egress rule. Args: the service's block (ports, to) */}}
{{- define "cd.egressService" -}}
- to:
{{- toYaml .to | nindent 4 }}
  ports:
{{- range .ports }}
    - protocol: TCP
      port: {{ . }}
{{- end }}
{{- end -}}

{{/* Settings checks (fail early with a clear message) -------------------------------- */}}

{{- define "cd.validate" -}}
{{- if not .Values.config.publicBaseUrl -}}
{{- fail "config.publicBaseUrl is required: the public URL of the gateway, which the AI service calls back" -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- range $key := list "databaseUrl" "redisUrl" "rabbitmqUrl" "jwtSecret" "deliverySecret" "adminPassword" -}}
{{- if not (index $.Values.secrets $key) -}}
{{- fail (printf "secrets.%s is required (or set secrets.existingSecret)" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.platform "knative") .Values.eventing.enabled -}}
{{- $refs := 0 -}}
{{- if .Values.eventing.clusterName }}{{ $refs = add1 $refs }}{{ end -}}
{{- if .Values.eventing.connectionSecret }}{{ $refs = add1 $refs }}{{ end -}}
{{- if .Values.eventing.connection.uri }}{{ $refs = add1 $refs }}{{ end -}}
{{- if ne $refs 1 -}}
{{- fail "eventing: set exactly one of clusterName, connectionSecret or connection.uri (the RabbitMQ the sources read)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.alertmanager.enabled (not .Values.alertmanager.existingSecret) (not .Values.alertmanager.receivers) -}}
{{- fail "alertmanager.receivers (or alertmanager.existingSecret) is required when alertmanager.enabled: who is told when an alert fires" -}}
{{- end -}}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) -}}
{{- fail "httpRoute.parentRefs is required when httpRoute.enabled: the Gateway that serves the route" -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) -}}
{{- fail "ingress.host is required when ingress.enabled" -}}
{{- end -}}
{{- if and .Values.grafana.enabled (not .Values.grafana.existingSecret) (not .Values.grafana.adminPassword) -}}
{{- fail "grafana.adminPassword (or grafana.existingSecret) is required when grafana.enabled" -}}
{{- end -}}
{{- end -}}
