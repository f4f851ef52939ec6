#!/usr/bin/env bash
# build-ollama.sh builds a CPU-only bin/ollama from the Ollama module version
# pinned in go.mod, with upstream's own dependency graph (go install, not a
# tool directive). It installs the Debian header packages llama.cpp needs when
# they are missing and takes miniaudio.h from the gen2brain/malgo module.
#
# Idempotent: when bin/ollama already reports the pinned version it exits at once.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

version=$(awk '$1 == "github.com/ollama/ollama" { print $2 }' go.mod)
[ -n "$version" ] || { echo "build-ollama: github.com/ollama/ollama not found in go.mod" >&2; exit 1; }
want=${version#v}
malgo_version=v0.11.24
bin="$root/bin/ollama"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "version is $want\$"; then
	exit 0
fi

# Debian headers (the module zip leaves out llama.cpp's vendor/ folder).
missing=()
[ -f /usr/include/nlohmann/json.hpp ] || missing+=(nlohmann-json3-dev)
[ -f /usr/include/stb/stb_image.h ] || missing+=(libstb-dev)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "build-ollama: need Debian packages ${missing[*]}; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	echo "build-ollama: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# miniaudio.h is not in Debian 12; malgo ships it at its module root.
malgo_dir=$(go mod download -json "github.com/gen2brain/malgo@$malgo_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -f "$malgo_dir/miniaudio.h" ] || { echo "build-ollama: miniaudio.h not found in malgo $malgo_version" >&2; exit 1; }
inc="$root/bin/.include"
mkdir -p "$inc/miniaudio"
cp "$malgo_dir/miniaudio.h" "$inc/miniaudio/miniaudio.h"

echo "build-ollama: building ollama $version (CPU only; a few minutes on a cold cache)" >&2
mkdir -p "$root/bin"
tmp=$(mktemp -d "$root/bin/.gobin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" GOFLAGS=-buildvcs=false CGO_ENABLED=1 \
	CGO_CPPFLAGS="-I$inc ${CGO_CPPFLAGS:-}" \
	go install -ldflags "-s -w -X github.com/ollama/ollama/version.Version=$want" \
	"github.com/ollama/ollama@$version"
mv "$tmp/ollama" "$bin"
"$bin" --version >&2 || true
