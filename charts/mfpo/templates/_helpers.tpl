{{/* Names and labels shared by every template. */}}

{{- define "mfpo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- /* The operator's RoleBinding in each watched namespace (namespaced mode). Not named like
the Role-bound bindings of earlier versions: a RoleBinding's roleRef cannot change, so an
upgrade replaces the old binding by this one instead of patching it. */ -}}
{{- define "mfpo.operatorBindingName" -}}
{{- printf "%s-operator" (include "mfpo.fullname" .) -}}
{{- end -}}

{{- /* operator.replicas, 1 when unset: `helm upgrade --reuse-values` from a chart without the
key renders with that chart's defaults (helm's action.Upgrade.reuseValues), where it is
missing. Not `default 1`: it would turn 0 into 1. */ -}}
{{- define "mfpo.operatorReplicas" -}}
{{- if kindIs "invalid" .Values.operator.replicas -}}1{{- else -}}{{ .Values.operator.replicas }}{{- end -}}
{{- end -}}

{{- define "mfpo.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mfpo.labels" -}}
{{ include "mfpo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mfpo.operatorSelectorLabels" -}}
{{ include "mfpo.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "mfpo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mfpo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespaces prepared for runs (and watched, in namespaced mode), as a JSON list. */}}
{{- define "mfpo.runNamespaces" -}}
{{- if .Values.watch.namespaces -}}
{{- .Values.watch.namespaces | uniq | toJson -}}
{{- else -}}
{{- list .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}

{{- define "mfpo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret with the bundled MinIO's credentials (one copy per run namespace). */}}
{{- define "mfpo.minioSecretName" -}}
{{- default (printf "%s-minio" (include "mfpo.fullname" .)) .Values.storage.bundled.existingSecret -}}
{{- end -}}

{{- define "mfpo.minioEndpoint" -}}
{{- printf "%s-minio.%s.svc:9000" (include "mfpo.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* Security settings shared by every container the chart runs. */}}
{{- define "mfpo.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mfpo.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}
