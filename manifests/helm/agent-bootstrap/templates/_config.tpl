{{/*
The services' config files (read with --config; camelCase keys, unknown keys are an error).
One line per key, each value through toJson so that YAML quoting can never change its type.
tests/manifests/test_config.py loads every rendered file with the service's own loader
(webhook.config.load_settings / approver.config.load_settings), so a key here that the service
does not know fails the tests.

Mount points (the Deployments mount exactly these):
  /etc/agent-bootstrap/config/    this ConfigMap
  /etc/agent-bootstrap/tls/       serving certificate Secret (tls.crt, tls.key)
  /etc/agent-bootstrap/signing/   signing key Secret (signing.key)          webhook only
  /etc/agent-bootstrap/client-ca/ API server client CA Secret               webhook only
  /etc/agent-bootstrap/jwks/      JWKS ConfigMap (jwks.json)                approver only
  /etc/agent-bootstrap/admin/     admin tokens Secret                       approver only
  /etc/agent-bootstrap/review/    review tokens Secret                      approver only
  /etc/agent-bootstrap/api-keys/  API keys Secret                           approver only
  /etc/agent-bootstrap/streamspace/        StreamSpace bootstrap key Secret  approver, controlPlane streamspace
  /etc/agent-bootstrap/streamspace-admin/  StreamSpace admin account Secret  approver, controlPlane streamspace
  /etc/agent-bootstrap/streamspace-ca/     StreamSpace CA ConfigMap          approver, controlPlane streamspace (https)
  /etc/agent-bootstrap/agent-ca/  agent CA Secret (ca.crt, ca.key, ca-bundle.crt)  approver, agentCertificates.enabled
  /var/lib/agent-bootstrap/       SQLite PersistentVolumeClaim              approver only
*/}}

{{- define "agent-bootstrap.trustConfig" -}}
namespaces: {{ .Values.agents.autoApprove.namespaces | default list | toJson }}
serviceAccounts: {{ .Values.agents.serviceAccounts | default list | toJson }}
podSelector: {{ .Values.agents.podSelector | toJson }}
{{- end -}}

{{- define "agent-bootstrap.webhookConfig" -}}
trust:
  {{- include "agent-bootstrap.trustConfig" . | nindent 2 }}
annotationKey: {{ .Values.agents.annotationKey | toJson }}
issuer: {{ .Values.token.issuer | toJson }}
audience: {{ .Values.token.audience | toJson }}
cluster: {{ .Values.clusterName | toJson }}
tokenTtlSeconds: {{ .Values.agents.tokenTtlSeconds | toJson }}
injectEnv: {{ .Values.agents.injectEnv | toJson }}
{{- with .Values.agents.agentProxy }}
{{- if .enabled }}
agentProxy:
  enabled: true
  image: {{ .image | default (include "agent-bootstrap.image" $) | toJson }}
  upstreamUrl: {{ .upstreamUrl | default (include "agent-bootstrap.approverUrl" $) | toJson }}
  containers: {{ .containers | toJson }}
  urlVariable: {{ .urlVariable | toJson }}
  caConfigMap: {{ .caConfigMap | toJson }}
  caKey: {{ .caKey | toJson }}
  port: {{ .port | toJson }}
  imagePullPolicy: {{ $.Values.image.pullPolicy | toJson }}
{{- end }}
{{- end }}
{{- /* agentProxy disabled: left out (the webhook's default). */}}
signingKeyFile: /etc/agent-bootstrap/signing/signing.key
tlsCertFile: /etc/agent-bootstrap/tls/tls.crt
tlsKeyFile: /etc/agent-bootstrap/tls/tls.key
{{- with .Values.webhook.apiServerClientCA.existingSecret }}
tlsClientCaFile: {{ printf "/etc/agent-bootstrap/client-ca/%s" $.Values.webhook.apiServerClientCA.key | toJson }}
{{- end }}
reloadIntervalSeconds: {{ .Values.webhook.reloadIntervalSeconds | toJson }}
port: {{ .Values.webhook.port | toJson }}
metricsPort: {{ .Values.webhook.metricsPort | toJson }}
workers: {{ .Values.webhook.workers | toJson }}
shutdownDelaySeconds: {{ .Values.webhook.shutdownDelaySeconds | toJson }}
shutdownGraceSeconds: {{ .Values.webhook.shutdownGraceSeconds | toJson }}
{{ include "agent-bootstrap.loggingConfig" . }}
{{- end -}}

{{- define "agent-bootstrap.loggingConfig" -}}
logFormat: {{ .Values.logging.format | toJson }}
logLevel: {{ .Values.logging.level | toJson }}
{{- end -}}

{{- define "agent-bootstrap.approverConfig" -}}
autoApprove:
  enabled: {{ .Values.agents.autoApprove.enabled | toJson }}
  {{- with .Values.agents.autoApprove.maxActivePerNamespace }}
  maxActivePerNamespace: {{ . | toJson }}
  {{- end }}
  {{- with .Values.agents.autoApprove.maxActivePerOwner }}
  maxActivePerOwner: {{ . | toJson }}
  {{- end }}
trust:
  {{- include "agent-bootstrap.trustConfig" . | nindent 2 }}
token:
  issuer: {{ .Values.token.issuer | toJson }}
  audience: {{ .Values.token.audience | toJson }}
  clusters: {{ concat (list .Values.clusterName) (.Values.token.extraClusters | default list) | uniq | toJson }}
  leewaySeconds: {{ .Values.token.leewaySeconds | toJson }}
  {{- if .Values.agents.autoApprove.enabled }}
  jwksFile: /etc/agent-bootstrap/jwks/jwks.json
  {{- end }}
{{- with .Values.agents.agentIdPrefix }}
agentIdPrefix: {{ . | toJson }}
{{- end }}
{{- if eq .Values.approver.database.type "sqlite" }}
databaseUrl: "sqlite+aiosqlite:////var/lib/agent-bootstrap/agent-bootstrap.db"
{{- end }}
{{- /* postgresql: databaseUrl comes from AGENT_BOOTSTRAP_APPROVER_DATABASE_URL (a Secret), never from this ConfigMap. */}}
{{- with .Values.approver.adminTokens.existingSecret }}
adminTokensFile: {{ printf "/etc/agent-bootstrap/admin/%s" $.Values.approver.adminTokens.key | toJson }}
{{- end }}
{{- with .Values.approver.reviewTokens.existingSecret }}
reviewTokensFile: {{ printf "/etc/agent-bootstrap/review/%s" $.Values.approver.reviewTokens.key | toJson }}
{{- end }}
kubernetes:
  enabled: {{ eq (include "agent-bootstrap.approverWatchesPods" .) "true" }}
  tokenAnnotation: {{ .Values.agents.annotationKey | toJson }}
  bindSourceAddress: {{ .Values.approver.kubernetes.bindSourceAddress | toJson }}
pendingTtlSeconds: {{ .Values.approver.pendingTtlSeconds | toJson }}
{{- if .Values.approver.tls.enabled }}
tlsCertFile: /etc/agent-bootstrap/tls/tls.crt
tlsKeyFile: /etc/agent-bootstrap/tls/tls.key
{{- end }}
port: {{ .Values.approver.port | toJson }}
metricsPort: {{ .Values.approver.metricsPort | toJson }}
retryAfterSeconds: {{ .Values.approver.retryAfterSeconds | toJson }}
{{ include "agent-bootstrap.loggingConfig" . }}
apiKeys: {{ include "agent-bootstrap.apiKeysConfig" . }}
serviceAccountTokens: {{ include "agent-bootstrap.serviceAccountTokensConfig" . }}
{{- with .Values.controlPlane }}
{{- if eq .type "streamspace" }}
{{- $ss := .streamspace }}
controlPlane:
  type: {{ .type | toJson }}
  budgetSeconds: {{ .budgetSeconds | toJson }}
  syncIntervalSeconds: {{ .syncIntervalSeconds | toJson }}
  streamspace:
    url: {{ $ss.url | toJson }}
    {{- if $ss.caBundle.existingConfigMap }}
    caFile: {{ printf "/etc/agent-bootstrap/streamspace-ca/%s" $ss.caBundle.key | toJson }}
    {{- end }}
    bootstrapKeyFile: {{ printf "/etc/agent-bootstrap/streamspace/%s" $ss.bootstrapKey.key | toJson }}
    adminUsernameFile: {{ printf "/etc/agent-bootstrap/streamspace-admin/%s" $ss.admin.usernameKey | toJson }}
    adminPasswordFile: {{ printf "/etc/agent-bootstrap/streamspace-admin/%s" $ss.admin.passwordKey | toJson }}
    forwardClientAddress: {{ $ss.forwardClientAddress | toJson }}
{{- end }}
{{- end }}
{{- /* controlPlane type none: left out (the approver's default). */}}
{{- with .Values.agentCertificates }}
{{- if .enabled }}
agentCertificates:
  enabled: true
  caCertFile: "/etc/agent-bootstrap/agent-ca/ca.crt"
  caKeyFile: "/etc/agent-bootstrap/agent-ca/ca.key"
  trustBundleFile: "/etc/agent-bootstrap/agent-ca/ca-bundle.crt"
  lifetimeSeconds: {{ .lifetimeSeconds | toJson }}
  maxLivePerAgent: {{ .maxLivePerAgent | toJson }}
  requireAtGate: {{ .requireAtGate | toJson }}
  cluster: {{ include "agent-bootstrap.agentCertificatesCluster" $ | toJson }}
  crlValiditySeconds: {{ .crlValiditySeconds | toJson }}
  minReissueSeconds: {{ .minReissueSeconds | toJson }}
{{- end }}
{{- end }}
{{- /* agentCertificates disabled: left out (the approver's default). */}}
{{- /*
PENDING: approver settings not in approver/config.py yet. When the approver reads one, add its
line above this comment and remove the key from PENDING_APPROVER_KEYS in
tests/manifests/test_config.py (that test fails until both are done).

Left at the approver's defaults on purpose: sweepIntervalSeconds, databasePoolSize, eventLoop,
kubernetes.watch/requestTimeoutSeconds/watchTimeoutSeconds.
*/}}
{{- end -}}


{{- define "agent-bootstrap.apiKeysConfig" -}}
{{- $c := dict "enabled" .Values.agents.autoApprove.requireApiKey -}}
{{- if .Values.approver.apiKeys.existingSecret -}}
{{- $_ := set $c "secretDir" "/etc/agent-bootstrap/api-keys" -}}
{{- end -}}
{{- toJson $c -}}
{{- end -}}

{{- define "agent-bootstrap.serviceAccountTokensConfig" -}}
{{- $sa := .Values.agents.serviceAccountTokens -}}
{{- $c := dict "enabled" $sa.enabled "mode" $sa.mode "audience" $sa.audience "allow" ($sa.allow | default list) "bootstrapBinding" $sa.bootstrapBinding -}}
{{- if eq $sa.mode "offline" -}}
{{- $_ := set $c "issuer" $sa.issuer -}}
{{- $_ := set $c "jwksUrl" $sa.jwksUrl -}}
{{- end -}}
{{- toJson $c -}}
{{- end -}}
