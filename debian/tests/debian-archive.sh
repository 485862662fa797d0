# Sourced by debian/tests/clean-root and tests/vm/build-image: which Debian archive a
# clean bookworm root is made from. Sets `mirrors` (this machine's apt sources, deb822 or
# one-line, for mmdebstrap; empty: mmdebstrap's default) and `archive` (the archive's URL,
# to check it is reachable). Third-party repositories are never used.
mirrors=()
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirrors=(/etc/apt/sources.list.d/debian.sources)
elif grep -qsE '^deb .*/debian/? ' /etc/apt/sources.list; then
    mirrors=(/etc/apt/sources.list)
fi
archive=$(sed -nE 's#^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)(https?://[^[:space:]]+/debian)/?([[:space:]].*)?$#\3#p' \
    "${mirrors[@]:-/dev/null}" | head -n 1)
archive=${archive:-http://deb.debian.org/debian}

# archive_reachable SUITE: exit 0 if the archive answers for SUITE.
archive_reachable() {
    python3 - "$archive/dists/$1/InRelease" <<'PY'
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=20).read(1)
PY
}
