#!/usr/bin/env bash
# curl through a joined session, both ways. Usage:
#   broker-agent join CODE --broker HOST:PORT          # prints SOCKS and HTTP proxy ports
#   SOCKS=127.0.0.1:1080 HTTP_PROXY_ADDR=127.0.0.1:3128 examples/curl.sh http://printer.lan/
set -euo pipefail
url="${1:?usage: examples/curl.sh URL}"
socks="${SOCKS:-127.0.0.1:1080}"
http_proxy_addr="${HTTP_PROXY_ADDR:-127.0.0.1:3128}"

# SOCKS5 with remote name resolution: names resolve on the device.
curl -sS --fail --socks5-hostname "$socks" "$url"
# Same through the HTTP proxy (absolute-form GET; https:// URLs use CONNECT).
curl -sS --fail -x "http://$http_proxy_addr" "$url"
# Diagnostics: a refused or forbidden destination fails with the device's exact reason.
#   curl -v --socks5-hostname "$socks" http://10.20.0.9:81/  ->  "... (5)" = connection refused
#   curl -i -x "http://$http_proxy_addr" http://10.20.0.1/   ->  403, X-Broker-Error: BRK_POLICY_DENIED
