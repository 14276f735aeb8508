{{/*
Names, labels and the shared pieces of both Deployments.
*/}}

{{- define "agent-bootstrap.fullname" -}}
{{- .Values.fullnameOverride | default "agent-bootstrap" | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "agent-bootstrap.webhookName" -}}
{{- printf "%s-webhook" (include "agent-bootstrap.fullname" .) -}}
{{- end -}}

{{- define "agent-bootstrap.approverName" -}}
{{- printf "%s-approver" (include "agent-bootstrap.fullname" .) -}}
{{- end -}}

{{/* Labels every object carries; call with (dict "root" $ "component" "webhook"). */}}
{{- define "agent-bootstrap.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{ include "agent-bootstrap.selectorLabels" . }}
app.kubernetes.io/part-of: agent-bootstrap
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end -}}

{{/* The immutable subset used in selectors; call with (dict "root" $ "component" "webhook"). */}}
{{- define "agent-bootstrap.selectorLabels" -}}
app.kubernetes.io/name: agent-bootstrap
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "agent-bootstrap.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository ($image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
This release's approver as pods of the cluster reach it: its Service's DNS name (one of the names
in its serving certificate) on the Service port. https: call only with approver.tls.enabled.
*/}}
{{- define "agent-bootstrap.approverUrl" -}}
{{- printf "https://%s.%s.svc:%d" (include "agent-bootstrap.approverName" .) .Release.Namespace (int .Values.approver.port) -}}
{{- end -}}

{{/* The cluster agent certificates name (agentCertificates.cluster, else clusterName). */}}
{{- define "agent-bootstrap.agentCertificatesCluster" -}}
{{- .Values.agentCertificates.cluster | default .Values.clusterName -}}
{{- end -}}

{{/* Trusted namespaces (agents.autoApprove.namespaces), as given. */}}
{{- define "agent-bootstrap.trustedNamespaces" -}}
{{- toJson (.Values.agents.autoApprove.namespaces | default list) -}}
{{- end -}}

{{/* Namespaces the webhook must never select, whatever the values say. */}}
{{- define "agent-bootstrap.neverSelected" -}}
{{- toJson (list .Release.Namespace "kube-system") -}}
{{- end -}}

{{/* Where the webhook's signing key lives: a Secret with the key `signing.key`. */}}
{{- define "agent-bootstrap.signingKeySecret" -}}
{{- if .Values.keys.signingKeySecretName -}}
{{- .Values.keys.signingKeySecretName -}}
{{- else if .Values.certManager.enabled -}}
{{- printf "%s-signing-key" (include "agent-bootstrap.fullname" .) -}}
{{- else -}}
{{- .Values.tls.webhookSecretName -}}
{{- end -}}
{{- end -}}

{{/*
true when the approver reads and watches pods: approver.kubernetes.enabled and a trusted
namespace to grant it on (the Roles are per trusted namespace; with none there is nothing to
read and no token is mounted).
*/}}
{{- define "agent-bootstrap.approverWatchesPods" -}}
{{- if and .Values.approver.kubernetes.enabled .Values.agents.autoApprove.namespaces }}true{{ end -}}
{{- end -}}

{{/* true when the approver talks to the API server (pod watch or TokenReview). */}}
{{- define "agent-bootstrap.approverUsesApi" -}}
{{- $sa := .Values.agents.serviceAccountTokens -}}
{{- $review := and $sa.enabled (eq $sa.mode "tokenreview") -}}
{{- if or (eq (include "agent-bootstrap.approverWatchesPods" .) "true") $review }}true{{ end -}}
{{- end -}}

{{/*
Name of the release's cluster-scoped objects (MutatingWebhookConfiguration,
ValidatingAdmissionPolicy and its binding, ClusterRole, ClusterRoleBinding), unique per release:
Helm's usual fullname rule with the chart's name prefix (fullname) in place of the chart name.
The release name when it contains the prefix ("agent-bootstrap", "agent-bootstrap-staging"),
else "<release>-<prefix>". Namespaced objects keep the prefix alone (certs-tooling's names).
*/}}
{{- define "agent-bootstrap.clusterName" -}}
{{- $fullname := include "agent-bootstrap.fullname" . -}}
{{- if contains $fullname .Release.Name -}}
{{- .Release.Name | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $fullname -}}
{{- end -}}
{{- end -}}

{{/*
A pod or container security context from values (webhook/approver podSecurityContext,
securityContext): rendered as given (keys set to null are left out by Helm), without runAsUser,
runAsGroup and fsGroup when global.openshift (its SCC assigns them). values.schema.json keeps
every value inside the restricted Pod Security profile. Call with (dict "root" $ "context" ...).
*/}}
{{- define "agent-bootstrap.securityContext" -}}
{{- $ctx := deepCopy (.context | default dict) -}}
{{- if (.root.Values.global | default dict).openshift -}}
{{- $ctx = omit $ctx "runAsUser" "runAsGroup" "fsGroup" -}}
{{- end -}}
{{- toYaml $ctx -}}
{{- end -}}

{{/*
Pod template labels: the chart's labels, then podLabels (which may not override one of them).
Call with (dict "root" $ "component" "webhook" "extra" .Values.webhook.podLabels "what" "webhook.podLabels").
*/}}
{{- define "agent-bootstrap.podLabels" -}}
{{- $own := include "agent-bootstrap.labels" . | fromYaml -}}
{{- range $key, $_ := .extra -}}
{{- if hasKey $own $key -}}
{{- fail (printf "%s must not set %q: the chart sets that label (selectors depend on it)" $.what $key) -}}
{{- end -}}
{{- end -}}
{{- include "agent-bootstrap.labels" . -}}
{{- with .extra }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/*
topologySpreadConstraints from values; an entry without labelSelector selects this component's
pods. Call with (dict "root" $ "component" "webhook" "constraints" ...).
*/}}
{{- define "agent-bootstrap.topologySpreadConstraints" -}}
{{- $out := list -}}
{{- $own := dict "matchLabels" (include "agent-bootstrap.selectorLabels" . | fromYaml) -}}
{{- range .constraints -}}
{{- $c := deepCopy . -}}
{{- if not $c.labelSelector -}}
{{- $_ := set $c "labelSelector" $own -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
The scheduling part of a pod spec, shared by both Deployments: priorityClassName, affinity
(values, or the default preferred anti-affinity over nodes when "spread"), topology spread,
nodeSelector, tolerations. Call with (dict "root" $ "component" "webhook" "values"
.Values.webhook "spread" true).
*/}}
{{- define "agent-bootstrap.podScheduling" -}}
{{- $v := .values -}}
{{- $sel := dict "root" .root "component" .component -}}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if $v.affinity }}
affinity:
  {{- toYaml $v.affinity | nindent 2 }}
{{- else if .spread }}
affinity:
  podAntiAffinity:
    # Spread the replicas over nodes, so one node going away does not take them all down
    # (preferred, not required: a one-node cluster still runs them all).
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "agent-bootstrap.selectorLabels" $sel | nindent 14 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- include "agent-bootstrap.topologySpreadConstraints" (dict "root" $.root "component" $.component "constraints" .) | nindent 2 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Refuse values that would make the installation unsafe or unable to work. Included once (by the
config ConfigMaps, which are always rendered); `fail` stops the whole render.
*/}}
{{- define "agent-bootstrap.validate" -}}
{{- $forbidden := list .Release.Namespace "kube-system" "kube-public" "kube-node-lease" -}}
{{- range .Values.agents.autoApprove.namespaces -}}
{{- if has . $forbidden -}}
{{- fail (printf "agents.autoApprove.namespaces must not list %q: the webhook never selects its own namespace (%s) or the system namespaces (kube-system, kube-public, kube-node-lease), so a broken webhook can never stand in the way of the pods that repair it" . $.Release.Namespace) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.agents.autoApprove.enabled (not .Values.agents.autoApprove.namespaces) -}}
{{- fail "agents.autoApprove.enabled needs at least one namespace in agents.autoApprove.namespaces" -}}
{{- end -}}
{{- $db := .Values.approver.database -}}
{{- if and (eq $db.type "sqlite") (gt (int .Values.approver.replicas) 1) -}}
{{- fail "approver.replicas > 1 needs approver.database.type postgresql: SQLite lives on one ReadWriteOnce volume and allows one writer" -}}
{{- end -}}
{{- if and (eq $db.type "postgresql") (not $db.postgresql.existingSecret) -}}
{{- fail "approver.database.postgresql.existingSecret must name the Secret that holds the PostgreSQL URL" -}}
{{- end -}}
{{- $drain := addf .Values.webhook.shutdownDelaySeconds .Values.webhook.shutdownGraceSeconds -}}
{{- if le (float64 .Values.webhook.terminationGracePeriodSeconds) $drain -}}
{{- fail (printf "webhook.terminationGracePeriodSeconds (%v) must exceed shutdownDelaySeconds + shutdownGraceSeconds (%v), or the kubelet kills the webhook mid-drain" .Values.webhook.terminationGracePeriodSeconds $drain) -}}
{{- end -}}
{{- if .Values.keys.create -}}
{{- if or (not .Values.keys.signingKey) (not .Values.keys.jwks) -}}
{{- fail "keys.create needs keys.signingKey and keys.jwks (--set-file keys.signingKey=./pki/signing.key --set-file keys.jwks=./pki/jwks.json)" -}}
{{- end -}}
{{- if and (not .Values.certManager.enabled) (or (not .Values.keys.webhookTls.crt) (not .Values.keys.webhookTls.key)) -}}
{{- fail "keys.create without certManager needs keys.webhookTls.crt and .key (./pki/webhook-tls.crt, ./pki/webhook-tls.key)" -}}
{{- end -}}
{{- if and (not .Values.certManager.enabled) .Values.approver.tls.enabled (or (not .Values.keys.approverTls.crt) (not .Values.keys.approverTls.key)) -}}
{{- fail "keys.create with approver.tls.enabled needs keys.approverTls.crt and .key (./pki/approver-tls.crt, ./pki/approver-tls.key)" -}}
{{- end -}}
{{- end -}}
{{- $sa := .Values.agents.serviceAccountTokens -}}
{{- if and $sa.enabled (eq $sa.mode "offline") (or (not $sa.issuer) (not $sa.jwksUrl)) -}}
{{- fail "agents.serviceAccountTokens.mode offline needs issuer and jwksUrl" -}}
{{- end -}}
{{- $certs := .Values.agentCertificates -}}
{{- if and $certs.requireAtGate (not $certs.enabled) -}}
{{- fail "agentCertificates.requireAtGate needs agentCertificates.enabled: without certificates issued, the gate would refuse every agent" -}}
{{- end -}}
{{- if $certs.enabled -}}
{{- if not .Values.approver.tls.enabled -}}
{{- fail "agentCertificates.enabled needs approver.tls.enabled: the approver reads the agent's client certificate from its own TLS handshake (a proxy terminating TLS in front of it would swallow it)" -}}
{{- end -}}
{{- $cluster := include "agent-bootstrap.agentCertificatesCluster" . -}}
{{- if or (gt (len $cluster) 253) (not (regexMatch "^[A-Za-z0-9][A-Za-z0-9.-]*$" $cluster)) -}}
{{- fail (printf "agentCertificates: the cluster %q (agentCertificates.cluster, else clusterName) cannot name a cluster in an agent certificate (letters, digits, '.' and '-', starting with a letter or digit, at most 253): set agentCertificates.cluster" $cluster) -}}
{{- end -}}
{{- end -}}
{{- $proxy := .Values.agents.agentProxy -}}
{{- if $proxy.enabled -}}
{{- if not .Values.agents.autoApprove.namespaces -}}
{{- fail "agents.agentProxy.enabled needs at least one namespace in agents.autoApprove.namespaces: the webhook adds the proxy only to the pods it stamps, and with no trusted namespace it is not installed" -}}
{{- end -}}
{{- if not $proxy.upstreamUrl -}}
{{- if not .Values.approver.tls.enabled -}}
{{- fail "agents.agentProxy.enabled with an empty upstreamUrl (this release's approver) needs approver.tls.enabled: the proxy speaks TLS to the approver and presents the agent's certificate there" -}}
{{- end -}}
{{- if not $certs.enabled -}}
{{- fail "agents.agentProxy.enabled with an empty upstreamUrl (this release's approver) needs agentCertificates.enabled: the proxy exists to obtain and present the agent's certificate, which this approver would refuse to issue" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $cp := .Values.controlPlane -}}
{{- if eq $cp.type "streamspace" -}}
{{- $ss := $cp.streamspace -}}
{{- if not $ss.url -}}
{{- fail "controlPlane.type streamspace needs controlPlane.streamspace.url: StreamSpace's API, scheme://host:port (its chart: http://<release>-api.<namespace>.svc:8000)" -}}
{{- end -}}
{{- if not $ss.bootstrapKey.existingSecret -}}
{{- fail "controlPlane.type streamspace needs controlPlane.streamspace.bootstrapKey.existingSecret: a Secret in the release namespace holding a copy of StreamSpace's agent-bootstrap-key (its <release>-secrets)" -}}
{{- end -}}
{{- if not $ss.admin.existingSecret -}}
{{- fail "controlPlane.type streamspace needs controlPlane.streamspace.admin.existingSecret: a Secret in the release namespace holding the user name and password of a dedicated StreamSpace account with role admin" -}}
{{- end -}}
{{- if eq $ss.admin.usernameKey $ss.admin.passwordKey -}}
{{- fail "controlPlane.streamspace.admin.usernameKey and passwordKey must be different keys of the Secret" -}}
{{- end -}}
{{- if and $ss.caBundle.existingConfigMap (not (hasPrefix "https://" $ss.url)) -}}
{{- fail "controlPlane.streamspace.caBundle is only used with an https url: with an http url the bundle would be ignored" -}}
{{- end -}}
{{- if has $ss.namespace $forbidden -}}
{{- fail (printf "controlPlane.streamspace.namespace must not be %q: the chart renders NetworkPolicies there, and StreamSpace's agents (whose Role reads the Secrets of their namespace) must never share the release namespace (%s) with the approver's keys, nor a system namespace" $ss.namespace $.Release.Namespace) -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- if and $ss.networkPolicy.restrictAgents (not (include "agent-bootstrap.selectorIsSet" .Values.agents.podSelector)) -}}
{{- fail "controlPlane.streamspace.networkPolicy.restrictAgents needs a non-empty agents.podSelector: an empty one would restrict the egress of every pod in StreamSpace's namespace" -}}
{{- end -}}
{{- if and $ss.networkPolicy.allowApprover (not (include "agent-bootstrap.selectorIsSet" $ss.apiPodSelector)) -}}
{{- fail "controlPlane.streamspace.networkPolicy.allowApprover needs a non-empty controlPlane.streamspace.apiPodSelector: an empty one would isolate every pod in StreamSpace's namespace" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}


{{/* "true" when a metav1.LabelSelector (a values map) selects something narrower than everything. */}}
{{- define "agent-bootstrap.selectorIsSet" -}}
{{- if or .matchLabels .matchExpressions }}true{{ end -}}
{{- end -}}

{{/*
A metav1.LabelSelector from a values map, without empty matchLabels/matchExpressions (for
NetworkPolicy peers; call only with a selector that selectorIsSet).
*/}}
{{- define "agent-bootstrap.cleanSelector" -}}
{{- $s := dict -}}
{{- with .matchLabels }}{{ $_ := set $s "matchLabels" . }}{{ end -}}
{{- with .matchExpressions }}{{ $_ := set $s "matchExpressions" . }}{{ end -}}
{{- toJson $s -}}
{{- end -}}
