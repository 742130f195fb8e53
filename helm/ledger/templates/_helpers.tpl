{{/* Names */}}
{{- define "ledger.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ledger.fullname" -}}
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

{{- define "ledger.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ledger.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ledger.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ledger.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if eq $tag "latest" -}}{{- fail "image.tag must not be latest: pin a version" -}}{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/* Selector labels: ctx = dict "root" $ "component" "api" "cell" "alpha" (cell optional) */}}
{{- define "ledger.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ledger.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .cell }}
ledger.cellledger.io/cell: {{ . }}
{{- end }}
{{- end -}}

{{- define "ledger.labels" -}}
{{ include "ledger.selectorLabels" . }}
helm.sh/chart: {{ include "ledger.chart" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: ledger
{{- end -}}

{{/* A cell: cellDefaults deep-merged with the cell's own values. ctx = dict "root" $ "cell" . ; returns YAML */}}
{{- define "ledger.cell" -}}
{{- $cell := mergeOverwrite (deepCopy .root.Values.cellDefaults) (deepCopy .cell) -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$" (toString $cell.name)) -}}
{{- fail (printf "cell name %q: lower-case letters, digits and -, at most 20 characters" (toString $cell.name)) -}}
{{- end -}}
{{- if not $cell.existingSecret -}}
{{- $_ := set $cell "existingSecret" (printf "%s-cell-%s" (include "ledger.fullname" .root) $cell.name) -}}
{{- end -}}
{{- toYaml $cell -}}
{{- end -}}

{{- define "ledger.controlPlaneSecret" -}}
{{- default (printf "%s-control-plane" (include "ledger.fullname" .)) .Values.controlPlane.existingSecret -}}
{{- end -}}

{{/* The cell's Secret-backed variables. ctx = dict "cell" $cell "prefix" "CELL_" "keys" (list "databaseUrl" ...) */}}
{{- define "ledger.cellSecretEnv" -}}
{{- $cell := .cell -}}
{{- range $item := .vars }}
- name: {{ index $item 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $cell.existingSecret }}
      key: {{ index $cell.secretKeys (index $item 1) }}
{{- end }}
{{- end -}}

{{/* Extra settings: a map of lower-case field names to values, as PREFIX_FIELD variables. */}}
{{- define "ledger.settingsEnv" -}}
{{- $prefix := .prefix -}}
{{- range $key, $value := .settings }}
- name: {{ printf "%s%s" $prefix ($key | upper) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{- define "ledger.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* ctx = dict "root" $ "component" "api" "cell" "alpha" */}}
{{- define "ledger.topologySpread" -}}
{{- $ctx := . -}}
{{- $ts := .root.Values.topologySpread -}}
{{- if $ts.enabled }}
topologySpreadConstraints:
{{- range $key := $ts.topologyKeys }}
  - maxSkew: {{ $ts.maxSkew }}
    topologyKey: {{ $key }}
    whenUnsatisfiable: {{ $ts.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "ledger.selectorLabels" $ctx | nindent 8 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The writable directory a read-only root filesystem still needs. */}}
{{- define "ledger.tmpVolume" -}}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
{{- end -}}

{{- define "ledger.tmpMount" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{- define "ledger.preStop" -}}
lifecycle:
  preStop:
    exec:
      command: ["sleep", "{{ .Values.preStopSleepSeconds }}"]
{{- end -}}

{{/* The worker's probes: its metrics listener is on loopback inside the pod, so it is checked from inside. */}}
{{- define "ledger.workerProbes" -}}
{{- $probe := printf "import urllib.request; urllib.request.urlopen('http://127.0.0.1:%v/metrics', timeout=3).read(1)" .Values.ports.metrics -}}
startupProbe:
  exec:
    command: ["python", "-c", {{ $probe | quote }}]
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 60
readinessProbe:
  exec:
    command: ["python", "-c", {{ $probe | quote }}]
  periodSeconds: 30
  timeoutSeconds: 5
livenessProbe:
  exec:
    command: ["python", "-c", {{ $probe | quote }}]
  periodSeconds: 30
  timeoutSeconds: 5
  failureThreshold: 4
{{- end -}}

{{- define "ledger.httpProbes" -}}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}


{{/* The router's probes. Its /readyz is 503 while any cell with tenants fails its checks, though it serves the other
     cells' tenants: as the readiness of every router pod, one cell down would empty the router's Service. So a pod
     starts once its routing table is loaded (/startupz is 200, whatever the cells' health: never before, when it
     would answer 401 to every tenant; the table, once loaded, stays), and then is ready while it answers. */}}
{{- define "ledger.routerProbes" -}}
startupProbe:
  httpGet:
    path: /startupz
    port: http
  periodSeconds: 2
  timeoutSeconds: 3
  failureThreshold: 150
readinessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}
