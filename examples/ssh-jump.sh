#!/usr/bin/env bash
# Reach an SSH server on the device's network with stock OpenSSH, no broker-agent needed.
# Usage: BROKER=broker.example.com PORT=2222 CODE=... examples/ssh-jump.sh [ssh options] USER@HOST [command]
#   examples/ssh-jump.sh admin@10.20.0.5
#   examples/ssh-jump.sh -i ~/.ssh/admin_key -p 2022 admin@10.20.0.5 uptime
# Everything after the script name goes to ssh as usual (options, destination, command).
# Options for the hop to the broker itself (your key, known-hosts settings) go in SSH_OPTS:
#   SSH_OPTS="-i ~/.ssh/id_ed25519" examples/ssh-jump.sh admin@10.20.0.5
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: examples/ssh-jump.sh [ssh options] USER@HOST [command]" >&2; exit 2; }
: "${BROKER:?set BROKER}" "${CODE:?set CODE}"
port="${PORT:-2222}"

# Either a jump host ...
#   ssh -J "$CODE@$BROKER:$port" admin@10.20.0.5
# ... or the equivalent ProxyCommand (works with scp, rsync -e ssh, git, ansible):
exec ssh -o "ProxyCommand=ssh ${SSH_OPTS:-} -p $port -W %h:%p $CODE@$BROKER" "$@"
