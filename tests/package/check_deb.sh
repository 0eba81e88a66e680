#!/usr/bin/env bash
# Builds the Debian package of the build in $1 with CPack and checks it
# (ctest test debian_package): the files an operator needs are in it, the
# config is a conffile, the unit passes systemd-analyze verify, and lintian
# reports nothing but the tags listed below, each with its reason.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work="$build/package-check"
rm -rf "$work"
mkdir -p "$work"
cmake --build "$build" --target nodehost nodehost_debian_files
(cd "$build" && cpack -G DEB -B "$work" >"$work/cpack.log")
deb=$(ls "$work"/flotilla_*_amd64.deb)
echo "package: $deb"

dpkg-deb --contents "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/contents"
for f in /usr/bin/nodehost /lib/systemd/system/nodehost.service /etc/nodehost/nodehost.toml \
  /usr/lib/sysusers.d/nodehost.conf /usr/share/man/man1/nodehost.1.gz \
  /usr/share/doc/flotilla/copyright /usr/share/doc/flotilla/changelog.gz \
  /usr/include/flotilla/node_host.h /usr/include/flotilla/version.h \
  /usr/lib/cmake/Flotilla/FlotillaConfig.cmake /usr/lib/libflotilla_engine.a; do
  if ! grep -qx "$f" "$work/contents"; then
    echo "check_deb: $f is not in the package" >&2
    exit 1
  fi
done
dpkg-deb --ctrl-tarfile "$deb" | tar -x -O ./conffiles | grep -qx /etc/nodehost/nodehost.toml ||
  { echo "check_deb: /etc/nodehost/nodehost.toml is not a conffile" >&2; exit 1; }

# The default config as shipped is one the daemon accepts.
sed "s|/var/lib/nodehost|$work/data|" "$src/tools/nodehost/debian/nodehost.toml" >"$work/nodehost.toml"
"$build/tools/nodehost/nodehost" serve --check-config "$work/nodehost.toml"

# The unit, with its programs pointed at the build (verify checks they exist).
mkdir -p "$work/unit"
sed "s|/usr/bin/nodehost|$build/tools/nodehost/nodehost|g" \
  "$src/tools/nodehost/debian/nodehost.service" >"$work/unit/nodehost.service"
# --man=no: the man page is in the package, not installed here.
systemd-analyze verify --man=no "$work/unit/nodehost.service" 2>"$work/verify.log" || {
  cat "$work/verify.log" >&2
  echo "check_deb: systemd-analyze verify failed" >&2
  exit 1
}
# verify prints problems as warnings and still exits 0 for some of them.
if grep -v "^$" "$work/verify.log" | grep -q .; then
  cat "$work/verify.log" >&2
  echo "check_deb: systemd-analyze verify reported the above" >&2
  exit 1
fi

# lintian: errors and warnings fail the check; the tags suppressed here are
# explained one by one.
#  - no-manual-page etc. are not suppressed: the package ships them.
#  - static-library-has-unneeded-sections / unstripped-static-library: the
#    archives keep their debug information on purpose (RelWithDebInfo), so
#    that an embedder's crash has line numbers.
suppress=unstripped-static-library,static-library-has-unneeded-sections
lintian --allow-root --fail-on error,warning --suppress-tags "$suppress" "$deb" | tee "$work/lintian.log"
echo "check_deb: ok"
