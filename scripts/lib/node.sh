# shellcheck shell=bash
# The single Kubernetes node of `scripts/local-cluster start --node`: containerd, the
# kubelet, kube-proxy, kube-controller-manager and kube-scheduler beside the control plane,
# on a bridge of its own. Sourced by scripts/local-cluster after control-plane.sh.
# The facts behind every setting are in ../shared/reference/real-node.md.
#
# A node is machine-wide (cgroups, iptables, a bridge, sysctls), so there is at most one
# per machine, at fixed places:
#   NODE_ROOT=/var/lib/mcpgw-node   kubelet root, containerd root, CNI config and IPAM, pod logs
#   NODE_RUN=/run/mcpgw-node        containerd state and socket
#   $CP_CACHE_DIR/node-prestate/    what the machine looked like before the node started
#                                   (sysctls, nft tables, which shared dirs existed), and
#                                   `owner` (the state dir) while a node runs. `stop`,
#                                   `node-clean` and the next `start --node` after a crash
#                                   put the machine back from it; `node-check` compares.
# Network: bridge mcpgw0 holds the node IP 10.213.0.1/24 (pods get .10-.250, no masquerade);
# kube-apiserver listens on the node IP only; services are 10.0.0.0/16, routed to the bridge
# so that no packet for them can leave through the host's own route; pods cannot leave
# the bridge (FORWARD drop) and get a resolv.conf naming only 127.0.0.1 (their own loopback).

NODE_ROOT=/var/lib/mcpgw-node
NODE_RUN=/run/mcpgw-node
NODE_BRIDGE=mcpgw0
NODE_IP=10.213.0.1
NODE_CIDR=10.213.0.0/24
NODE_SERVICE_CIDR=10.0.0.0/16
NODE_SOCK="$NODE_RUN/containerd/containerd.sock"
NODE_PRE="$CP_CACHE_DIR/node-prestate"
NODE_PAUSE_IMAGE=localhost/mcpgw/pause:1
NODE_COMMENT=mcpgw-node
# What the kubelet and kube-proxy may change (kubelet: container_manager_linux.go
# setupKernelTunables; kube-proxy: conntrack and route_localnet), restored on stop.
NODE_SYSCTLS="kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
net.ipv4.conf.all.route_localnet net.netfilter.nf_conntrack_max
net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait
net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables"
# Shared places the kubelet, containerd or CNI create when missing; removed on stop if so.
NODE_SHARED_DIRS="/var/lib/cni /var/log/containers /var/log/pods /run/netns"
NODE_PACKAGES="containerd runc containernetworking-plugins iptables conntrack nftables"

# --- build ---------------------------------------------------------------------------

node_need_root() {
    [[ $(id -u) == 0 ]] ||
        cp_die "a node needs root (cgroups, mounts, a bridge, iptables); this is uid $(id -u). The bare API server mode (start without --node) does not."
    [[ -d /sys/fs/cgroup ]] || cp_die "a node needs cgroups (/sys/fs/cgroup missing)"
    ip netns list >/dev/null 2>&1 || cp_die "a node needs network namespaces (ip netns failed)"
}

# Debian packages: installed once (apt-get is idempotent; skipped when all are present).
node_install_packages() {
    local missing="" p
    for p in $NODE_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=" $p"
    done
    [[ -z $missing ]] && return 0
    command -v apt-get >/dev/null 2>&1 || cp_die "missing packages:$missing (and no apt-get)"
    cp_log "installing Debian packages:$missing"
    local t0=$SECONDS
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2 || {
        DEBIAN_FRONTEND=noninteractive apt-get update >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2
    } || cp_die "apt-get install$missing failed"
    cp_log "installed packages in $((SECONDS - t0))s"
}

# The pause image archive, cached by the hash of its source.
node_pause_archive() {
    local src="$CP_REPO_ROOT/tools/node/pause.c" hash
    hash="$(cat "$src" "$CP_REPO_ROOT/scripts/lib/oci-image.py" | sha256sum | cut -c1-16)"
    printf '%s\n' "$CP_CACHE_DIR/images/pause-$hash.tar"
}

node_build_pause() {
    local out; out="$(node_pause_archive)"
    [[ -s $out ]] && return 0
    mkdir -p "$(dirname "$out")"
    local tmp; tmp="$(mktemp -d)"
    gcc -static -O2 -s -o "$tmp/pause" "$CP_REPO_ROOT/tools/node/pause.c" >&2 || { rm -rf "$tmp"; cp_die "building pause failed (gcc, libc6-dev)"; }
    python3 "$CP_REPO_ROOT/scripts/lib/oci-image.py" "$tmp/pause.tar" "$NODE_PAUSE_IMAGE" \
        --user 65535:65535 --entrypoint /pause "$tmp/pause=/pause" || { rm -rf "$tmp"; cp_die "packing the pause image failed"; }
    mv "$tmp/pause.tar" "$out"
    rm -rf "$tmp"
    cp_log "built the pause image $NODE_PAUSE_IMAGE -> $out"
}

node_build() {
    node_need_root
    cp_build_node
    node_install_packages
    node_build_pause
}

# --- machine state: record, clean, check ---------------------------------------------------

node_record_prestate() {
    rm -rf "$NODE_PRE"
    mkdir -p "$NODE_PRE"
    local s v d
    for s in $NODE_SYSCTLS; do
        v="$(sysctl -n "$s" 2>/dev/null)" && printf '%s=%s\n' "$s" "$v"
    done >"$NODE_PRE/sysctls"
    nft list tables 2>/dev/null | sort >"$NODE_PRE/nft-tables"
    for d in $NODE_SHARED_DIRS; do if [[ -e $d ]]; then echo "$d"; fi; done >"$NODE_PRE/dirs"
}

# Pids of every process that belongs to a node: ours by path, shims by socket, and whatever
# runs in the kubelet's pod cgroups.
node_pids() {
    local p cmd owner="//none//"
    [[ -r $NODE_PRE/owner ]] && owner="$(cat "$NODE_PRE/owner")/"
    for p in /proc/[0-9]*; do
        cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
        case $cmd in
            *"$NODE_ROOT"* | *"$NODE_RUN"* | *"$owner"*) echo "${p#/proc/}" ;;
        esac
    done
    find /sys/fs/cgroup/*/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null || true
}

node_mounts() {
    awk -v a="$NODE_ROOT" -v b="$NODE_RUN" '$5 ~ "^(" a "|" b ")(/|$)" || $5 ~ "^/run/netns/cni-" {print $5}' /proc/self/mountinfo
}

node_kube_chains() {
    local ipt t
    for ipt in iptables ip6tables; do
        for t in filter nat mangle raw; do
            "$ipt-save" -t "$t" 2>/dev/null | sed -n "s/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/$ipt $t \1/p"
            if "$ipt-save" -t "$t" 2>/dev/null | grep -q -- "$NODE_COMMENT"; then echo "$ipt $t rule-commented-$NODE_COMMENT"; fi
        done
    done
}

# Deletes, in every table, the rules that jump to KUBE-*/CNI-* chains or carry our comment,
# then the chains themselves.
node_clean_iptables() {
    local ipt t line chains c
    for ipt in iptables ip6tables; do
        command -v "$ipt-save" >/dev/null 2>&1 || continue
        for t in filter nat mangle raw; do
            "$ipt-save" -t "$t" 2>/dev/null | grep -E '^-A ' | grep -E -- "-j (KUBE|CNI)-|$NODE_COMMENT" |
                while read -r line; do
                    eval "$ipt -w -t $t ${line/#-A/-D}" 2>/dev/null || true
                done || true
            chains="$("$ipt-save" -t "$t" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p')"
            for c in $chains; do "$ipt" -w -t "$t" -F "$c" 2>/dev/null || true; done
            for c in $chains; do "$ipt" -w -t "$t" -X "$c" 2>/dev/null || true; done
        done
    done
    # nft tables that did not exist before and hold nothing now (iptables-nft leaves
    # its tables behind; the kubelet adds `kube-proxy` ones).
    nft list tables 2>/dev/null | sort | while read -r _ fam name; do
        grep -qxF "table $fam $name" "$NODE_PRE/nft-tables" 2>/dev/null && continue
        if ! nft list table "$fam" "$name" 2>/dev/null | grep -qvE '^\s*(table |chain |type |\}|$)'; then
            nft delete table "$fam" "$name" 2>/dev/null || true
        fi
    done
    return 0
}

node_restore_sysctls() {
    [[ -r $NODE_PRE/sysctls ]] || return 0
    local kv
    while read -r kv; do
        [[ $(sysctl -n "${kv%%=*}" 2>/dev/null) == "${kv#*=}" ]] || sysctl -q -w "$kv" >/dev/null 2>&1 || cp_log "warning: could not restore $kv"
    done <"$NODE_PRE/sysctls"
    return 0
}

# Puts the machine back as it was before a node ran, whatever is left (a clean stop, a crash,
# a killed start). Safe to run when nothing is left.
node_clean() {
    local pids i
    for i in 1 2 3 4 5; do
        pids="$(node_pids | sort -u | grep -vx "$$" || true)"
        [[ -z $pids ]] && break
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.3
    done
    local m
    for i in 1 2 3; do
        m="$(node_mounts | sort -r)"
        [[ -z $m ]] && break
        while read -r m; do umount -l "$m" 2>/dev/null || true; done <<<"$m"
    done
    for m in /run/netns/cni-*; do [[ -e $m ]] && rm -f "$m"; done
    # Pods' veths go with their netns; any left on the bridge go first, then the bridge.
    ip link show 2>/dev/null | sed -n "s/^[0-9]*: \(veth[^@:]*\)@.*master $NODE_BRIDGE .*/\1/p" | while read -r v; do ip link del "$v" 2>/dev/null || true; done
    ip link del "$NODE_BRIDGE" 2>/dev/null || true
    node_clean_iptables
    # Pod cgroups, deepest first.
    local c
    { find /sys/fs/cgroup/*/kubepods -depth -type d 2>/dev/null || true; } | while read -r c; do rmdir "$c" 2>/dev/null || true; done
    node_restore_sysctls
    rm -rf "$NODE_ROOT" "$NODE_RUN"
    local d
    for d in $NODE_SHARED_DIRS; do
        [[ -e $d ]] || continue
        grep -qxF "$d" "$NODE_PRE/dirs" 2>/dev/null && continue
        [[ -r $NODE_PRE/dirs ]] || continue
        rm -rf "$d"
    done
    rm -f "$NODE_PRE/owner"
    return 0
}

# Lists whatever a node left on the machine, one line each; exit 1 if anything.
node_check() {
    local out=""
    local pids; pids="$(node_pids | sort -u)"
    [[ -n $pids ]] && out+="processes: $(echo $pids)"$'\n'
    local m; m="$(node_mounts)"
    [[ -n $m ]] && out+="mounts: $(echo $m)"$'\n'
    ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && out+="bridge: $NODE_BRIDGE"$'\n'
    local ch; ch="$(node_kube_chains)"
    [[ -n $ch ]] && out+="iptables: $(echo $ch)"$'\n'
    [[ -n "$(find /sys/fs/cgroup/*/kubepods -maxdepth 0 2>/dev/null)" ]] && out+="cgroups: $(echo /sys/fs/cgroup/*/kubepods)"$'\n'
    [[ -e $NODE_ROOT || -e $NODE_RUN ]] && out+="dirs: $NODE_ROOT $NODE_RUN"$'\n'
    if [[ -r $NODE_PRE/sysctls ]]; then
        local kv now
        while read -r kv; do
            now="$(sysctl -n "${kv%%=*}" 2>/dev/null)"
            [[ $now == "${kv#*=}" ]] || out+="sysctl: ${kv%%=*} is $now, was ${kv#*=}"$'\n'
        done <"$NODE_PRE/sysctls"
        local tables; tables="$(nft list tables 2>/dev/null | sort | comm -23 - "$NODE_PRE/nft-tables")"
        [[ -n $tables ]] && out+="nft tables: $(echo $tables)"$'\n'
        local d
        for d in $NODE_SHARED_DIRS; do
            [[ -e $d ]] && ! grep -qxF "$d" "$NODE_PRE/dirs" && out+="dir: $d"$'\n'
        done
    else
        out+="(no record of the machine before a node ran: $NODE_PRE/sysctls; sysctls, nft tables and shared dirs not compared)"$'\n'
    fi
    [[ -e $NODE_PRE/owner ]] && out+="a node is recorded as running: $(cat "$NODE_PRE/owner")"$'\n'
    if [[ -n $out ]]; then
        printf '%s' "$out" | sed 's/^/[local-cluster] left over: /' >&2
        return 1
    fi
    cp_log "node-check: no node process, mount, bridge, KUBE-/CNI- chain, cgroup, changed sysctl, nft table or dir left"
}

# Cleans a crashed node's leftovers, or refuses when a node is running.
node_prepare_machine() {
    if [[ -r $NODE_PRE/owner ]]; then
        local owner; owner="$(cat "$NODE_PRE/owner")"
        if [[ -n "$(node_pids)" && -d $owner ]]; then
            cp_die "a node is already running (state dir $owner); one node per machine (stop it: scripts/local-cluster stop --dir $owner)"
        fi
        cp_log "cleaning the leftovers of a node that did not stop ($owner)"
        node_clean
    elif [[ -n "$(node_pids)$(node_mounts)" ]] || ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
        cp_log "cleaning node leftovers with no record"
        node_clean
    fi
    node_record_prestate
}

# --- start ---------------------------------------------------------------------------------

node_network_up() {
    ip link add "$NODE_BRIDGE" type bridge || cp_die "cannot create bridge $NODE_BRIDGE"
    ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
    ip link set "$NODE_BRIDGE" up
    ip route add "$NODE_SERVICE_CIDR" dev "$NODE_BRIDGE" src "$NODE_IP"
    sysctl -q -w "net.ipv4.conf.$NODE_BRIDGE.forwarding=1" >/dev/null
    iptables -w -I FORWARD 1 -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -m comment --comment "$NODE_COMMENT: pods never leave the bridge" -j DROP
    ip6tables -w -I FORWARD 1 -i "$NODE_BRIDGE" -m comment --comment "$NODE_COMMENT: no IPv6 from pods" -j DROP
}

# Client certificate for an identity: node_cert NAME CN [O] -> NAME.crt, NAME.key
node_cert() {
    local name="$1" cn="$2" org="${3:-}" subj
    subj="/CN=$cn"
    [[ -n $org ]] && subj="/O=$org/CN=$cn"
    (
        set -e
        cd "$S_DIR"
        umask 077
        openssl ecparam -name prime256v1 -genkey -noout -out "$name.key"
        openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
        printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=${4:-clientAuth}" ${5:+"subjectAltName=$5"} >"$name.ext"
        openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
            -extfile "$name.ext" -out "$name.crt"
        rm -f "$name.csr" "$name.ext" ca.srl
    ) >/dev/null 2>>"$S_DIR/openssl.log" || { cat "$S_DIR/openssl.log" >&2; cp_die "certificate $name failed"; }
}

# kubeconfig with a client certificate: node_kubeconfig NAME URL
node_kubeconfig() {
    local name="$1" url="$2"
    cat >"$S_DIR/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mcpgw-local
  cluster:
    server: $url
    certificate-authority: $S_DIR/ca.crt
users:
- name: $name
  user:
    client-certificate: $S_DIR/$name.crt
    client-key: $S_DIR/$name.key
contexts:
- name: mcpgw-local
  context: {cluster: mcpgw-local, user: $name}
current-context: mcpgw-local
EOF
}

node_credentials() {
    node_cert kubelet "system:node:$NODE_IP" system:nodes
    node_cert kubelet-serving "system:node:$NODE_IP" system:nodes serverAuth "IP:$NODE_IP"
    node_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
    node_cert kube-controller-manager system:kube-controller-manager
    node_cert kube-scheduler system:kube-scheduler
    node_cert kube-proxy system:kube-proxy
}

node_write_configs() {
    local url="$1" kubelet_port="$2" proxy_health="$3" proxy_metrics="$4"
    mkdir -p "$NODE_ROOT/cni/net.d" "$NODE_ROOT/kubelet" "$NODE_RUN/containerd"
    cat >"$S_DIR/containerd.toml" <<EOF
version = 2
root = "$NODE_ROOT/containerd"
state = "$NODE_RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$NODE_SOCK"
[ttrpc]
  address = "$NODE_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # runc cannot write a negative oom_score_adj without CAP_SYS_RESOURCE (this VM).
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_ROOT/cni/net.d"
    max_conf_num = 1
EOF
    cat >"$NODE_ROOT/cni/net.d/10-mcpgw.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "mcpgw",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_ROOT/cni/ipam",
        "ranges": [[{"subnet": "$NODE_CIDR", "rangeStart": "10.213.0.10", "rangeEnd": "10.213.0.250", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
    printf 'nameserver 127.0.0.1\n' >"$S_DIR/resolv.conf"
    cat >"$S_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 here: kubelet 1.35 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$NODE_SOCK
address: $NODE_IP
port: $kubelet_port
readOnlyPort: 0
healthzPort: 0
tlsCertFile: $S_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $S_DIR/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $S_DIR/ca.crt}
authorization: {mode: Webhook}
resolvConf: $S_DIR/resolv.conf
podLogsDir: $NODE_ROOT/pod-logs
failSwapOn: false
syncFrequency: 10s
fileCheckFrequency: 0s
nodeStatusUpdateFrequency: 5s
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
maxPods: 50
serializeImagePulls: false
EOF
    cat >"$S_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $S_DIR/kube-proxy.kubeconfig}
hostnameOverride: "$NODE_IP"
bindAddress: $NODE_IP
clusterCIDR: $NODE_CIDR
mode: iptables
nodePortAddresses: ["$NODE_IP/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
healthzBindAddress: 127.0.0.1:$proxy_health
metricsBindAddress: 127.0.0.1:$proxy_metrics
EOF
    local n
    for n in kubelet kube-controller-manager kube-scheduler kube-proxy; do node_kubeconfig "$n" "$url"; done
}

# Starts a node process in the background: node_spawn NAME CMD... (sets NODE_SPAWNED)
node_spawn() {
    local name="$1"; shift
    : >"$S_DIR/$name.log"
    # umask 022: the script's own is 077 (for its keys), which would make containerd's
    # snapshot and kubelet's volume dirs unreadable for a pod's non-root user.
    (umask 022 && exec "$@") >>"$S_DIR/$name.log" 2>&1 </dev/null 3>&- &
    NODE_SPAWNED=$!
    echo "MCPGW_PID_${name//-/_}=$NODE_SPAWNED" >>"$S_DIR/node-pids"
}

node_wait() {
    local what="$1" deadline="$2" log="$3"; shift 3
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            cp_log "$what: not in time"
            show_log_tail "$S_DIR/$log.log"
            exit 1
        fi
        sleep 0.2
    done
}

node_ctr() { ctr --address "$NODE_SOCK" "$@"; }

# Imports an image archive into containerd's k8s.io namespace.
node_import() {
    node_ctr -n k8s.io images import --all-platforms "$1" >&2
}

node_start() {
    local url="$1" deadline="$2"
    local kubelet_port proxy_health proxy_metrics
    read -r kubelet_port proxy_health proxy_metrics <<<"$(free_ports 3)"
    node_write_configs "$url" "$kubelet_port" "$proxy_health" "$proxy_metrics"

    node_spawn containerd containerd --config "$S_DIR/containerd.toml" --log-level warn
    node_wait "containerd" "$deadline" containerd node_ctr version
    node_import "$(node_pause_archive)"

    node_spawn kube-controller-manager "$CP_KUBE_CONTROLLER_MANAGER" \
        --kubeconfig "$S_DIR/kube-controller-manager.kubeconfig" \
        --use-service-account-credentials \
        --service-account-private-key-file "$S_DIR/sa.key" \
        --root-ca-file "$S_DIR/ca.crt" \
        --cluster-name mcpgw-local \
        --leader-elect=false \
        --bind-address 127.0.0.1 --secure-port 0 \
        --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller' \
        --concurrent-deployment-syncs 2 \
        --node-monitor-grace-period 20s
    node_spawn kube-scheduler "$CP_KUBE_SCHEDULER" \
        --kubeconfig "$S_DIR/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig "$S_DIR/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig "$S_DIR/kube-scheduler.kubeconfig" \
        --leader-elect=false \
        --bind-address 127.0.0.1 --secure-port 0
    node_spawn kube-proxy "$CP_KUBE_PROXY" --config "$S_DIR/kube-proxy.yaml"
    node_spawn kubelet "$CP_KUBELET" \
        --config "$S_DIR/kubelet.yaml" \
        --kubeconfig "$S_DIR/kubelet.kubeconfig" \
        --root-dir "$NODE_ROOT/kubelet" \
        --hostname-override "$NODE_IP" \
        --node-ip "$NODE_IP" \
        --v 1

    node_wait "node $NODE_IP Ready" "$deadline" kubelet \
        kubectl --kubeconfig "$S_DIR/kubeconfig" wait --for=condition=Ready "node/$NODE_IP" --timeout=2s
    # The kubelet changed kernel.panic & co. at its start; put them back now.
    node_restore_sysctls
}

# Stops a running node's processes (workloads first, so the kubelet unmounts volumes and
# runs CNI DEL); the caller stops the control plane, then runs node_clean.
node_stop() {
    local dir="$1" rc=0 key val
    local -A pid=()
    if [[ -r $dir/node-pids ]]; then
        while IFS='=' read -r key val; do pid[${key#MCPGW_PID_}]="$val"; done <"$dir/node-pids"
    fi
    local kc="$dir/kubeconfig"
    stop_process "${pid[kube_controller_manager]:-}" "$dir" 10 kube-controller-manager || rc=1
    stop_process "${pid[kube_scheduler]:-}" "$dir" 10 kube-scheduler || rc=1
    if [[ -r $kc ]] && is_our_process "${pid[kubelet]:-}" "$dir"; then
        kubectl --kubeconfig "$kc" delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
        local i
        for ((i = 0; i < 150; i++)); do
            [[ -z "$(kubectl --kubeconfig "$kc" get pods -A -o name 2>/dev/null)" ]] &&
                [[ -z "$(node_ctr -n k8s.io tasks ls -q 2>/dev/null)" ]] && break
            sleep 0.2
        done
    fi
    stop_process "${pid[kubelet]:-}" "$dir" 10 kubelet || rc=1
    stop_process "${pid[kube_proxy]:-}" "$dir" 10 kube-proxy || rc=1
    stop_process "${pid[containerd]:-}" "$dir" 10 containerd || rc=1
    return "$rc"
}
