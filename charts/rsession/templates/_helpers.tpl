{{/*
Helpers. Nothing here may use randomness or the clock: rendering must be byte-identical from
run to run (GitOps drift detection).
*/}}

{{/* Chart name, at most 63 characters. */}}
{{- define "rsession.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Name prefix of every object: fullnameOverride, else the release name when it contains the chart
name, else `<release>-<chart>`. Truncated to 50 characters so `-operator` suffixes fit in 63.
*/}}
{{- define "rsession.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "rsession.operator.fullname" -}}
{{- printf "%s-operator" (include "rsession.fullname" .) -}}
{{- end -}}

{{- define "rsession.mcp.fullname" -}}
{{- printf "%s-mcp" (include "rsession.fullname" .) -}}
{{- end -}}

{{/* Labels shared by every object (Helm's own labels included). */}}
{{- define "rsession.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rsession
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Selector labels of the operator pods. `app.kubernetes.io/name` is `rsession-operator` (not the
chart name) so these never match session pods, which carry `app.kubernetes.io/name: rsession`.
*/}}
{{- define "rsession.operator.selectorLabels" -}}
app.kubernetes.io/name: rsession-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
Selector labels of the MCP frontend pods; the operator's `frontendPodSelector` is set to these,
so session NetworkPolicies admit exactly these pods on the Rserve port.
*/}}
{{- define "rsession.mcp.selectorLabels" -}}
app.kubernetes.io/name: rsession-mcp
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: mcp
{{- end -}}

{{- define "rsession.operator.labels" -}}
{{ include "rsession.labels" . }}
{{ include "rsession.operator.selectorLabels" . }}
{{- end -}}

{{- define "rsession.mcp.labels" -}}
{{ include "rsession.labels" . }}
{{ include "rsession.mcp.selectorLabels" . }}
{{- end -}}

{{- define "rsession.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "rsession.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rsession.mcp.serviceAccountName" -}}
{{- if .Values.mcp.serviceAccount.create -}}
{{- default (include "rsession.mcp.fullname" .) .Values.mcp.serviceAccount.name -}}
{{- else -}}
{{- required "mcp.serviceAccount.name is required when mcp.serviceAccount.create is false" .Values.mcp.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* `repository@digest` when a digest is set, else `repository:tag` (tag defaults to appVersion). */}}
{{- define "rsession.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (default .appVersion .tag) -}}
{{- end -}}
{{- end -}}

{{/* The operator's configuration file (OperatorConfig, camelCase keys). */}}
{{- define "rsession.operator.config" -}}
{{- $config := deepCopy .Values.operator.sessionDefaults -}}
{{- $_ := set $config "frontendPodSelector" (include "rsession.mcp.selectorLabels" . | fromYaml) -}}
{{- $_ := set $config "frontendNamespace" .Release.Namespace -}}
{{- if .Values.operator.watchNamespace -}}
{{- $_ := set $config "watchNamespace" .Values.operator.watchNamespace -}}
{{- end -}}
{{- $_ := set $config "leaderElection" (dict
  "enabled" .Values.operator.leaderElection.enabled
  "leaseName" (include "rsession.operator.fullname" .)
  "leaseNamespace" .Release.Namespace
  "leaseDurationSecs" .Values.operator.leaderElection.leaseDurationSeconds
  "renewIntervalSecs" .Values.operator.leaderElection.renewIntervalSeconds) -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Refuses values that would give an unsafe or broken install. */}}
{{- define "rsession.validate" -}}
{{- if and (gt (int .Values.operator.replicaCount) 1) (not .Values.operator.leaderElection.enabled) -}}
{{- fail "operator.replicaCount > 1 needs operator.leaderElection.enabled=true (two reconcilers would fight)" -}}
{{- end -}}
{{- if and .Values.mcp.enabled .Values.operator.watchNamespace (ne .Values.operator.watchNamespace .Values.sessions.namespace) -}}
{{- fail "operator.watchNamespace must equal sessions.namespace while the MCP frontend is enabled (the operator would never see the sessions the frontend creates)" -}}
{{- end -}}
{{- if and .Values.pool.enabled .Values.operator.watchNamespace (ne .Values.operator.watchNamespace .Values.sessions.namespace) -}}
{{- fail "operator.watchNamespace must equal sessions.namespace while pool.enabled is true (the operator would never fill the pool)" -}}
{{- end -}}
{{- if ge (int .Values.operator.leaderElection.renewIntervalSeconds) (int .Values.operator.leaderElection.leaseDurationSeconds) -}}
{{- fail "operator.leaderElection.renewIntervalSeconds must be below leaseDurationSeconds" -}}
{{- end -}}
{{- end -}}

{{/* NetworkPolicy egress rule to the Kubernetes API server. */}}
{{- define "rsession.networkPolicy.apiServerEgress" -}}
- ports:
  {{- range .Values.networkPolicy.apiServer.ports }}
    - protocol: TCP
      port: {{ . }}
  {{- end }}
  {{- with .Values.networkPolicy.apiServer.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end -}}

{{/*
Egress rule to the cluster DNS pods (UDP and TCP 53), for the operator (database host names)
and the MCP frontend (session Service names).
*/}}
{{- define "rsession.networkPolicy.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}
