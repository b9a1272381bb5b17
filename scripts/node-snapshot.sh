#!/bin/sh
# node-snapshot.sh: write a netproxy node snapshot (docs/snapshot.md) with only the node's
# own tools -- for nodes where netproxy is not installed. Read-only; run it as root.
#
#   on the node (ssh):      sudo sh node-snapshot.sh > node.snap
#   through kubectl:        kubectl debug node/NAME -it --image=busybox -- chroot /host sh -s < node-snapshot.sh > node.snap
#   (or copy it to the node and run it there; `kubectl debug` gives a shell in the node's
#    network namespace, and `chroot /host` uses the node's iptables, nft, ipset and ip)
#
# Then: netproxy trace --rules node.snap --src ... --dst ...
# Missing tools are noted in the file's "### notes" section; the script never fails on them.

LC_ALL=C
export LC_ALL
PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
NOTES=""

note() {
    NOTES="$NOTES$1
"
}

have() {
    command -v "$1" >/dev/null 2>&1
}

# A section body: lines starting with ### get a backslash.
body() {
    sed -e 's/^###/\\###/'
}

# section NAME CMD ARGS...: run CMD; print the section, or note why not.
section() {
    name=$1
    shift
    if ! have "$1"; then
        note "$name: $1: not found"
        return 0
    fi
    tmp_err=${TMPDIR:-/tmp}/node-snapshot.$$.err
    if out=$("$@" 2>"$tmp_err"); then
        printf '### %s\n' "$name"
        [ -n "$out" ] && printf '%s\n' "$out" | body
    else
        note "$name: $1 failed: $(head -n 1 "$tmp_err")"
    fi
    rm -f "$tmp_err"
}

# rules NAME VARIANT-TOOL PLAIN-TOOL: an iptables-save variant, only when it holds rules.
rules() {
    name=$1
    tool=$2
    if ! have "$tool"; then
        case $name in
            *legacy*) if have "$3"; then tool=$3; else note "$name: $2: not found"; return 0; fi ;;
            *) note "$name: $2: not found"; return 0 ;;
        esac
    fi
    if out=$("$tool" 2>/dev/null) && printf '%s\n' "$out" | grep -q '^\*'; then
        printf '### %s\n' "$name"
        printf '%s\n' "$out" | body
        RULES_FOUND=1
    else
        note "$name: no rules"
    fi
}

version() {
    if have "$2"; then
        v=$("$2" "$3" 2>/dev/null | head -n 1)
        [ -n "$v" ] && printf '%s: %s\n' "$1" "$v"
    fi
    return 0
}

printf '# netproxy node snapshot v2\n'
printf '# producer: node-snapshot.sh\n'
printf '# taken: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
[ "$(id -u)" = 0 ] || printf '# user: not root (rules may be unreadable)\n'

printf '### hostname\n'
if [ -r /proc/sys/kernel/hostname ]; then cat /proc/sys/kernel/hostname; else hostname; fi

printf '### versions\n'
printf 'kernel: %s\n' "$(uname -r)"
version ip ip -V
version iptables iptables -V
version iptables-legacy iptables-legacy -V
version iptables-nft iptables-nft -V
version nft nft --version
version ipset ipset --version

RULES_FOUND=0
rules 'iptables-save (legacy)' iptables-legacy-save iptables-save
rules 'ip6tables-save (legacy)' ip6tables-legacy-save ip6tables-save
rules 'iptables-save (nft)' iptables-nft-save
rules 'ip6tables-save (nft)' ip6tables-nft-save
[ "$RULES_FOUND" = 1 ] || note "iptables: no rules in any variant"

section 'nft list ruleset' nft list ruleset
section 'ipset save' ipset save
section 'ip -j addr' ip -j addr
section 'ip -4 -j route show table all' ip -4 -j route show table all
section 'ip -6 -j route show table all' ip -6 -j route show table all
section 'ip -4 -j rule' ip -4 -j rule
section 'ip -6 -j rule' ip -6 -j rule
section 'ip -j link' ip -j link
section 'ip -j -d link show type vrf' ip -j -d link show type vrf
section 'ip -j neigh show' ip -j neigh show
section 'bridge -j fdb show' bridge -j fdb show

printf '### sysctl\n'
for key in net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.route_localnet \
        net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter \
        net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables \
        net.ipv4.conf.all.accept_local net.ipv4.conf.default.accept_local \
        net.ipv4.conf.all.src_valid_mark net.ipv4.conf.default.src_valid_mark; do
    file=/proc/sys/$(printf '%s' "$key" | tr . /)
    if [ -r "$file" ]; then
        printf '%s = %s\n' "$key" "$(cat "$file")"
    else
        note "sysctl: $key is not present"
    fi
done
# Each interface's own values of the source check (a dot in its name is a slash in the key,
# as sysctl spells it).
for name in rp_filter accept_local src_valid_mark; do
    for file in /proc/sys/net/ipv4/conf/*/"$name"; do
        [ -r "$file" ] || continue
        dev=${file#/proc/sys/net/ipv4/conf/}
        dev=${dev%/"$name"}
        case $dev in all|default) continue ;; esac
        printf 'net.ipv4.conf.%s.%s = %s\n' "$(printf '%s' "$dev" | tr . /)" "$name" "$(cat "$file")"
    done
done

printf '### notes\n'
printf '%s' "$NOTES"
printf '### end\n'
