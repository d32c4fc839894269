{{/* Names, labels and the RBAC rules shared by the ClusterRole and the per-namespace Roles. */}}

{{- define "cilvest-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name when it already says cilvest, else <release>-cilvest-operator; cluster-wide objects carry it. */}}
{{- define "cilvest-operator.fullname" -}}
{{- if contains "cilvest" .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "cilvest-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cilvest-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cilvest-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cilvest-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cilvest-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cilvest-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: cilvest
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
An image reference: repository@digest when a digest is given (what was signed and verified is what runs), else
repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "cilvest-operator.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "cilvest-operator.image" -}}
{{- include "cilvest-operator.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "cilvest-operator.workerImage" -}}
{{- include "cilvest-operator.imageRef" (dict "image" .Values.workerImage "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/*
What the operator does in a namespace it watches, read from operator/src (controller.rs, apply.rs, cli.rs):
- pipelines: watched (list, watch); only status is written (patch on the status subresource), never spec.
- children: server-side apply (patch; create when the child is new, since an apply that creates is authorized as
  create), listed by label before each pass, watched to requeue the owner, deleted when orphaned.
- Jobs and Pods: read for status.lastRun (the daily Job's termination message); Jobs are also watched, the
  Dataproc cleanup Job is created and read when a Dataproc pipeline is deleted, and the Kibana dashboard import Job
  is applied like a child and deleted when it is replaced.
- CilvestPipelines are patched only to add or remove the `cilvest.io/dataproc-cleanup` finalizer (RBAC cannot
  limit a patch to metadata; the operator never writes spec).
- Secrets: a metadata GET of the referenced X token Secret, to report SecretMissing. GET cannot be limited to
  metadata by RBAC, so this does grant reading those Secrets; it does not grant list or watch.
- Events: events.k8s.io, created and patched (the recorder bumps a repeated event's series).
*/}}
{{- define "cilvest-operator.namespacedRules" -}}
- apiGroups: ["cilvest.io"]
  resources: ["cilvestpipelines"]
  verbs: ["list", "watch", "get", "patch"]
- apiGroups: ["cilvest.io"]
  resources: ["cilvestpipelines/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  # `get` only because the operator grants each producer `get` on its X usage ConfigMap, and RBAC lets no one
  # grant what it does not hold.
  verbs: ["list", "watch", "get", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["kafka.strimzi.io"]
  resources: ["kafkatopics", "kafkausers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["elasticsearch.k8s.elastic.co"]
  resources: ["elasticsearches"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["kibana.k8s.elastic.co"]
  resources: ["kibanas"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
