#!/usr/bin/env bash
# Generates the TypeScript client from backend/openapi.json with the pinned
# @hey-api/openapi-ts and compiles it, with the README's example ("### A TypeScript
# client"), under tsc --strict. Writes only into node_modules/ and generated/ (ignored).
set -euo pipefail
cd "$(dirname "$0")"

step="setup"
trap 'status=$?; if [ "$status" -ne 0 ]; then echo "TypeScript client: FAILED at: $step (exit $status)" >&2; fi' EXIT

command -v node >/dev/null || { echo "node is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is not installed" >&2; exit 1; }

step="npm ci"
npm ci --no-audit --no-fund --loglevel=error >/dev/null

# A fresh directory every run: nothing of an older schema survives in it.
rm -rf generated
step="openapi-ts (generate from backend/openapi.json)"
log=$(mktemp)
if ! npx --no-install openapi-ts >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"

# The example is the first ```ts block after the heading, before the next heading.
step="extract the README example"
awk '
  /^### A TypeScript client[[:space:]]*$/ { in_section = 1; next }
  !in_section { next }
  /^```/ {
    if (in_ts) exit
    if (!in_fence && $0 ~ /^```ts[[:space:]]*$/ && !found) { in_ts = 1; found = 1; next }
    in_fence = !in_fence
    next
  }
  in_ts { print; next }
  !in_fence && /^#/ { exit }
  END { if (!found) exit 1 }
' ../../README.md >generated/example.ts || {
  echo "README.md has no \`\`\`ts block under '### A TypeScript client'" >&2
  exit 1
}

step="tsc --strict (generated client and README example)"
npx --no-install tsc -p .

step="done"
echo "TypeScript client: generated and compiled under --strict ($(grep -c '' generated/example.ts) lines of README example)"
