#!/usr/bin/env bash
# Reach an SSH server on the device's network with stock OpenSSH, no broker-agent needed.
# Usage: BROKER=broker.example.com PORT=2222 CODE=... examples/ssh-jump.sh admin@10.20.0.5
set -euo pipefail
dest="${1:?usage: examples/ssh-jump.sh USER@HOST [ssh args]}"; shift
: "${BROKER:?set BROKER}" "${CODE:?set CODE}"
port="${PORT:-2222}"

# Either a jump host ...
#   ssh -J "$CODE@$BROKER:$port" "$dest"
# ... or the equivalent ProxyCommand (works with scp, rsync -e ssh, git, ansible):
exec ssh -o "ProxyCommand=ssh -p $port -W %h:%p $CODE@$BROKER" "$dest" "$@"
