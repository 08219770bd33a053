#!/usr/bin/env bash
# Smoke test of scripts/local-cluster: builds (if needed), starts two clusters at
# once, checks that each stores the kinds of objects the operator tests use
# (Namespaces, Secrets, ConfigMaps, Deployments, Services, Ingresses, CRDs and
# custom resources with a status subresource, ServiceAccounts and tokens, RBAC,
# Leases, Pods), that RBAC is enforced for a non-admin identity, that helm
# installs a chart, that the two clusters are independent, and that stop stops
# exactly what start started (a second stop is a no-op).
#
#   bash scripts/lib/control-plane-smoke.sh
#
# Ends with the line `N passed, N failed` and exits non-zero on any failure.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LC="$ROOT/scripts/local-cluster"
PASSED=0 FAILED=0
WORK="$(mktemp -d)"
DIRS=()

log() { printf '[smoke] %s\n' "$*" >&2; }
check() {
    local name="$1"; shift
    if "$@" >"$WORK/out" 2>&1; then
        PASSED=$((PASSED + 1)); log "ok   $name"
    else
        FAILED=$((FAILED + 1)); log "FAIL $name"; sed 's/^/    /' "$WORK/out" >&2
        return 1
    fi
}
cleanup() {
    local d
    for d in "${DIRS[@]}"; do [[ -d $d ]] && "$LC" stop --dir "$d" >/dev/null 2>&1; done
    rm -rf "$WORK"
}
trap cleanup EXIT

"$LC" build || { echo "0 passed, 1 failed"; exit 1; }
eval "$("$LC" paths)" || { echo "0 passed, 1 failed"; exit 1; }
KUBECTL="${KUBECTL:-kubectl}"

# Two clusters, started concurrently.
t0=$(date +%s.%N)
"$LC" start >"$WORK/a.out" 2>"$WORK/a.err" &
pa=$!
"$LC" start >"$WORK/b.out" 2>"$WORK/b.err" &
pb=$!
wait $pa; ra=$?
wait $pb; rb=$?
t1=$(date +%s.%N)
log "two concurrent starts took $(python3 -c "print(round($t1 - $t0, 1))")s"
check "start A exits 0 and prints only the export line" \
    bash -c "[[ $ra == 0 ]] && grep -qxE 'export KUBECONFIG=/[^ ]+/kubeconfig' '$WORK/a.out' && [[ \$(wc -l <'$WORK/a.out') == 1 ]]" ||
    cat "$WORK/a.err" >&2
check "start B exits 0 and prints only the export line" \
    bash -c "[[ $rb == 0 ]] && grep -qxE 'export KUBECONFIG=/[^ ]+/kubeconfig' '$WORK/b.out' && [[ \$(wc -l <'$WORK/b.out') == 1 ]]" ||
    cat "$WORK/b.err" >&2
KA="$(sed -n 's/^export KUBECONFIG=//p' "$WORK/a.out")"
KB="$(sed -n 's/^export KUBECONFIG=//p' "$WORK/b.out")"
[[ -n $KA ]] && DIRS+=("$(dirname "$KA")")
[[ -n $KB ]] && DIRS+=("$(dirname "$KB")")
if [[ -z $KA || -z $KB ]]; then
    cat "$WORK/a.err" "$WORK/b.err" >&2
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 1
fi
check "the clusters have distinct state dirs" test "$KA" != "$KB"
check "env file names the kubeconfig" grep -qx "KUBECONFIG=$KA" "$(dirname "$KA")/env"

exercise() {
    local kc="$1"
    k() { "$KUBECTL" --kubeconfig "$kc" "$@"; }
    check "get ns" k get ns default kube-system
    check "create namespace" k create ns t1
    check "create secret" k -n t1 create secret generic s --from-literal=a=b
    check "create configmap" k -n t1 create configmap c --from-literal=a=b
    check "create deployment (stored only)" k -n t1 create deployment d --image=x
    check "create service" k -n t1 create service clusterip svc --tcp=80:8080
    check "create ingress" k -n t1 create ingress ing --rule="example.test/*=svc:80"
    check "create serviceaccount" k -n t1 create serviceaccount sa
    check "create token for a serviceaccount (TokenRequest)" k -n t1 create token sa --duration=10m
    check "create role + rolebinding" bash -c "
        '$KUBECTL' --kubeconfig '$kc' -n t1 create role r --verb=get,list --resource=configmaps &&
        '$KUBECTL' --kubeconfig '$kc' -n t1 create rolebinding rb --role=r --serviceaccount=t1:sa"
    check "RBAC allows what the role grants" bash -c "
        [[ \$('$KUBECTL' --kubeconfig '$kc' auth can-i list configmaps -n t1 --as=system:serviceaccount:t1:sa) == yes ]]"
    check "RBAC denies what it does not" bash -c "
        ! '$KUBECTL' --kubeconfig '$kc' auth can-i list secrets -n t1 --as=system:serviceaccount:t1:sa"
    check "a serviceaccount token authenticates and is authorized by RBAC" bash -c "
        tok=\$('$KUBECTL' --kubeconfig '$kc' -n t1 create token sa) &&
        '$KUBECTL' --kubeconfig '$kc' --token=\"\$tok\" -n t1 get configmaps c &&
        ! '$KUBECTL' --kubeconfig '$kc' --token=\"\$tok\" -n t1 get secrets s"
    check "create pod (no ServiceAccount admission)" k -n t1 run p --image=x --restart=Never
    check "create lease" bash -c "cat <<'EOF' | '$KUBECTL' --kubeconfig '$kc' apply -f -
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: l, namespace: t1}
spec: {holderIdentity: me, leaseDurationSeconds: 15}
EOF"
    check "apply CRD" bash -c "cat <<'EOF' | '$KUBECTL' --kubeconfig '$kc' apply -f -
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.example.com}
spec:
  group: smoke.example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
EOF"
    check "CRD becomes Established" k wait --for condition=established --timeout=60s crd/widgets.smoke.example.com
    check "create custom resource" bash -c "
        for i in \$(seq 50); do
          printf '%s\n' 'apiVersion: smoke.example.com/v1' 'kind: Widget' 'metadata: {name: w, namespace: t1}' 'spec: {size: 1}' |
            '$KUBECTL' --kubeconfig '$kc' apply -f - && exit 0
          sleep 0.2
        done; exit 1"
    check "patch custom resource status subresource" k -n t1 patch widget w --subresource=status --type=merge -p '{"status":{"ready":true}}'
    check "status is stored" bash -c "[[ \$('$KUBECTL' --kubeconfig '$kc' -n t1 get widget w -o jsonpath='{.status.ready}') == true ]]"
    check "helm installs a chart" bash -c "
        cd '$WORK' && rm -rf chart-\$\$ && '$HELM' create chart-\$\$ >/dev/null &&
        '$HELM' --kubeconfig '$kc' install smoke ./chart-\$\$ -n t1 &&
        '$KUBECTL' --kubeconfig '$kc' -n t1 get deployment smoke-chart-\$\$"
}
exercise "$KA"
check "cluster B does not see cluster A's namespace" bash -c "! '$KUBECTL' --kubeconfig '$KB' get ns t1"
exercise "$KB"

# Stop: by $KUBECONFIG (A) and by --dir (B); each exactly its own processes.
read_pids() { sed -n 's/^MCPGW_\(APISERVER\|ETCD\)_PID=//p' "$1/env" | tr "\n" " "; }
DA="$(dirname "$KA")" DB="$(dirname "$KB")"
PIDS_A="$(read_pids "$DA")" PIDS_B="$(read_pids "$DB")"
check "stop A via \$KUBECONFIG" env KUBECONFIG="$KA" "$LC" stop
check "A's processes are gone" bash -c "for p in $PIDS_A; do
    st=\$(sed -E 's/^.*\\) (.).*\$/\\1/' /proc/\$p/stat 2>/dev/null) || continue; [[ \$st == Z ]] || exit 1; done"
check "A's state dir is removed" test ! -e "$DA"
check "B still works after A stopped" "$KUBECTL" --kubeconfig "$KB" get ns t1
check "second stop of A is a clean no-op" bash -c "KUBECONFIG='$KA' '$LC' stop 2>&1 | grep -q 'already stopped'"
check "stop B via --dir" "$LC" stop --dir "$DB"
check "B's processes are gone" bash -c "for p in $PIDS_B; do
    st=\$(sed -E 's/^.*\\) (.).*\$/\\1/' /proc/\$p/stat 2>/dev/null) || continue; [[ \$st == Z ]] || exit 1; done"
check "stop refuses a dir that is not a cluster's" bash -c "d=\$(mktemp -d) && touch \$d/keep && ! '$LC' stop --dir \$d; rc=\$?; [[ -e \$d/keep ]] && rm -rf \$d && exit \$rc"

echo "$PASSED passed, $FAILED failed"
[[ $FAILED == 0 ]]
