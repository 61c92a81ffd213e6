"""The shell script a host runs at first boot to register itself (see userdata.py).

POSIX sh, so it runs on any image: curl when installed, else python3's urllib.
It is kept apart so it can be read (and run on a lab host with `sh`) on its own;
`commctl user-data --script` prints it with the settings filled in.
"""

# The line `# @SETTINGS@` is replaced by one `setting NAME 'value'` line per setting.
SCRIPT = r'''#!/bin/sh
# commissaire-register: register this host with Commissaire (PUT /api/v0/host).
# Written by `commctl user-data`; cloud-init runs it once, at first boot.
#
# Why the address is sent: the server takes a self-registering host's address from
# the connection, but behind NAT (most cloud hosts) that is the NAT's address, which
# the server cannot ssh back to. So the host finds the address the server can reach
# it at and sends it in the body:
#   metadata   the cloud metadata service (EC2/OpenStack): public-ipv4, else local-ipv4
#   interface  the source address of the route towards the server (ip route get)
#   auto       metadata when it answers within 2 s, else interface
#   connection send none: the server uses the connection's address (no NAT)
# COMMISSAIRE_ADDRESS set to an address skips all that.
#
# Every setting below can be overridden from the environment, e.g.
#   COMMISSAIRE_ADDRESS=127.0.100.5 COMMISSAIRE_LOG=/tmp/reg.log sh register
# Exit status: 0 registered, 1 gave up (COMMISSAIRE_MAX_TRIES), 2 refused (HTTP 400).
set -u
umask 077

setting() {  # setting NAME DEFAULT: NAME from the environment if set there, else DEFAULT
    eval "[ -n \"\${$1+set}\" ]" || eval "$1=\$2"
}
# @SETTINGS@

log() {
    line="$(date -u '+%Y-%m-%dT%H:%M:%SZ') commissaire-register: $*"
    printf '%s\n' "$line" >&2
    printf '%s\n' "$line" >> "$COMMISSAIRE_LOG" 2>/dev/null || :
}

excerpt() {  # excerpt FILE: its start, on one line
    tr '\n' ' ' < "$1" | cut -c1-400
}

valid_address() {  # an IPv4/IPv6 address or DNS name: safe to put in JSON as is
    case $1 in ''|*[!0-9A-Za-z.:-]*) return 1 ;; esac
    return 0
}

choose_http() {  # curl when present, else python3's urllib
    case $COMMISSAIRE_HTTP in
        curl|python3) printf '%s\n' "$COMMISSAIRE_HTTP"; return 0 ;;
    esac
    if command -v curl >/dev/null 2>&1; then echo curl
    elif command -v python3 >/dev/null 2>&1; then echo python3
    else return 1
    fi
}

fetch() {  # fetch METHOD URL [HEADER]: the body on stdout; 0 ok, 1 error answer, 3 no answer
    if [ "$http" = curl ]; then
        set -- "$1" "$2" "${3:-}"
        if [ -n "$3" ]; then
            curl -sf --connect-timeout 2 -m 4 -X "$1" -H "$3" "$2"
        else
            curl -sf --connect-timeout 2 -m 4 -X "$1" "$2"
        fi
        rc=$?
        case $rc in 0) return 0 ;; 22) return 1 ;; *) return 3 ;; esac
    fi
    python3 - "$1" "$2" "${3:-}" <<'PY'
import sys, urllib.error, urllib.request
method, url, header = sys.argv[1:4]
request = urllib.request.Request(url, method=method)
if header:
    name, _, value = header.partition(":")
    request.add_header(name.strip(), value.strip())
try:
    with urllib.request.urlopen(request, timeout=2) as answer:
        sys.stdout.write(answer.read().decode("utf-8", "replace"))
except urllib.error.HTTPError:
    sys.exit(1)
except Exception:
    sys.exit(3)
PY
}

metadata_address() {  # EC2 (IMDSv2 token when offered) and OpenStack metadata
    base=$COMMISSAIRE_METADATA_URL
    token=$(fetch PUT "$base/api/token" "X-aws-ec2-metadata-token-ttl-seconds: 60")
    [ $? -eq 3 ] && return 1  # nothing answers: not on a cloud with a metadata service
    header=
    [ -n "$token" ] && header="X-aws-ec2-metadata-token: $token"
    for key in public-ipv4 local-ipv4; do
        found=$(fetch GET "$base/meta-data/$key" "$header" | head -n 1 | tr -d ' \r\n')
        if valid_address "$found"; then
            log "address $found from the metadata service ($key)"
            printf '%s\n' "$found"
            return 0
        fi
    done
    return 1
}

server_ipv4() {  # the first endpoint's host as an IPv4 address, when it resolves to one
    hostport=${COMMISSAIRE_ENDPOINTS%% *}
    hostport=${hostport#*://}
    hostport=${hostport%%/*}
    hostport=${hostport##*@}
    host=${hostport%:*}
    case $host in
        *[!0-9.]*) getent ahostsv4 "$host" 2>/dev/null | awk 'NR == 1 { print $1 }' ;;
        *) printf '%s\n' "$host" ;;
    esac
}

interface_address() {  # source address of the route to the server (else to 1.1.1.1)
    command -v ip >/dev/null 2>&1 || return 1
    target=$(server_ipv4)
    [ -n "$target" ] || target=1.1.1.1
    found=$(ip -4 route get "$target" 2>/dev/null |
            awk '{ for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit } }')
    valid_address "$found" || return 1
    log "address $found from the interface routing to $target"
    printf '%s\n' "$found"
}

find_address() {  # the address to send; empty: let the server use the connection's
    if [ -n "$COMMISSAIRE_ADDRESS" ]; then
        printf '%s\n' "$COMMISSAIRE_ADDRESS"
        return 0
    fi
    case $COMMISSAIRE_ADDRESS_SOURCE in
        metadata) metadata_address ;;
        interface) interface_address ;;
        connection) return 0 ;;
        auto) metadata_address || interface_address || {
                  log "no address from metadata or interfaces: the server will use the connection's"
                  return 0
              } ;;
        *) log "unknown COMMISSAIRE_ADDRESS_SOURCE $COMMISSAIRE_ADDRESS_SOURCE"; return 1 ;;
    esac
}

write_body() {  # write_body ADDRESS: the PUT body, in $work/body.json (never in argv)
    {
        printf '{'
        [ -n "$1" ] && printf '"address": "%s", ' "$1"
        [ -n "$COMMISSAIRE_CLUSTER" ] && printf '"cluster": "%s", ' "$COMMISSAIRE_CLUSTER"
        [ -n "$COMMISSAIRE_SSH_PORT" ] && printf '"ssh_port": %s, ' "$COMMISSAIRE_SSH_PORT"
        printf '"remote_user": "%s", ' "$COMMISSAIRE_REMOTE_USER"
        printf '"ssh_priv_key": "%s"}\n' "$COMMISSAIRE_SSH_PRIV_KEY"
    } > "$work/body.json"
}

put_host() {  # put_host ENDPOINT: prints the HTTP status (000: no answer); body in $work/answer
    : > "$work/answer"
    if [ "$http" = curl ]; then
        {   # a config file keeps the credentials out of the process list
            printf 'url = "%s/api/v0/host"\n' "$1"
            printf 'request = "PUT"\n'
            printf 'header = "Content-Type: application/json"\n'
            [ -n "$COMMISSAIRE_AUTHORIZATION" ] &&
                printf 'header = "Authorization: %s"\n' "$COMMISSAIRE_AUTHORIZATION"
            printf 'data-binary = "@%s/body.json"\n' "$work"
            [ -n "$COMMISSAIRE_CA_FILE" ] && printf 'cacert = "%s"\n' "$COMMISSAIRE_CA_FILE"
        } > "$work/curl.conf"
        curl -sS --connect-timeout 10 -m 60 -o "$work/answer" -w '%{http_code}' \
            -K "$work/curl.conf" 2>>"$work/errors" || :
        return 0
    fi
    COMMISSAIRE_AUTHORIZATION=$COMMISSAIRE_AUTHORIZATION \
    python3 - "$1/api/v0/host" "$work" "$COMMISSAIRE_CA_FILE" 2>>"$work/errors" <<'PY'
import os, ssl, sys, urllib.error, urllib.request
url, work, cafile = sys.argv[1:4]
with open(os.path.join(work, "body.json"), "rb") as handle:
    body = handle.read()
request = urllib.request.Request(url, data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
if os.environ.get("COMMISSAIRE_AUTHORIZATION"):
    request.add_header("Authorization", os.environ["COMMISSAIRE_AUTHORIZATION"])
context = ssl.create_default_context(cafile=cafile or None)
try:
    answer = urllib.request.urlopen(request, timeout=60, context=context)
except urllib.error.HTTPError as error:
    answer = error
except Exception as error:
    print(error, file=sys.stderr)
    print("000")
    sys.exit(0)
with open(os.path.join(work, "answer"), "wb") as handle:
    handle.write(answer.read())
print(answer.status)
PY
}

case $COMMISSAIRE_SSH_PORT in
    '') ;;
    *[!0-9]*|0*) log "COMMISSAIRE_SSH_PORT must be a port number"; exit 2 ;;
    *) [ "$COMMISSAIRE_SSH_PORT" -le 65535 ] || { log "COMMISSAIRE_SSH_PORT is too big"; exit 2; } ;;
esac
for name in COMMISSAIRE_MAX_TRIES COMMISSAIRE_RETRY_DELAY COMMISSAIRE_RETRY_MAX_DELAY; do
    eval "value=\$$name"
    case $value in ''|*[!0-9]*) log "$name must be a whole number of tries or seconds"; exit 2 ;; esac
done
case $COMMISSAIRE_REMOTE_USER in ''|-*|*[!A-Za-z0-9._-]*)
    log "COMMISSAIRE_REMOTE_USER must be a plain user name"; exit 2 ;; esac
case $COMMISSAIRE_CLUSTER in *[!A-Za-z0-9._-]*)
    log "COMMISSAIRE_CLUSTER must be a plain name"; exit 2 ;; esac
case $COMMISSAIRE_SSH_PRIV_KEY in ''|*[!A-Za-z0-9+/=]*)
    log "COMMISSAIRE_SSH_PRIV_KEY must be the private key in base64"; exit 2 ;; esac
if ! http=$(choose_http); then
    log "neither curl nor python3 is installed: cannot register"
    exit 2
fi
work=$(mktemp -d) || exit 2
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM HUP

tries=0
delay=$COMMISSAIRE_RETRY_DELAY
while :; do
    tries=$((tries + 1))
    if address=$(find_address); then
        write_body "$address"
        for endpoint in $COMMISSAIRE_ENDPOINTS; do
            : > "$work/errors"
            status=$(put_host "$endpoint")
            case $status in
                200|201)
                    log "registered ${address:-by connection address} with $endpoint" \
                        "${COMMISSAIRE_CLUSTER:+in cluster $COMMISSAIRE_CLUSTER }(HTTP $status)"
                    exit 0 ;;
                400)
                    log "$endpoint refused the registration (HTTP 400): $(excerpt "$work/answer")"
                    exit 2 ;;
                000|'')
                    log "attempt $tries: no answer from $endpoint: $(excerpt "$work/errors")" ;;
                *)
                    log "attempt $tries: $endpoint answered HTTP $status: $(excerpt "$work/answer")" ;;
            esac
        done
    else
        log "attempt $tries: cannot find this host's address ($COMMISSAIRE_ADDRESS_SOURCE)"
    fi
    if [ "$COMMISSAIRE_MAX_TRIES" -gt 0 ] && [ "$tries" -ge "$COMMISSAIRE_MAX_TRIES" ]; then
        log "giving up after $tries attempts"
        exit 1
    fi
    sleep "$delay"
    delay=$((delay * 2))
    [ "$delay" -gt "$COMMISSAIRE_RETRY_MAX_DELAY" ] && delay=$COMMISSAIRE_RETRY_MAX_DELAY
done
'''
