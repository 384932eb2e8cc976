#!/usr/bin/env bash
# Smoke-test a built vizapp the way a lab machine runs it:
#
#   packaging/smoke_test.sh dist/vizapp                   # the folder
#   packaging/smoke_test.sh dist/vizapp-0.1.0-linux-amd64.tar.gz
#   sudo packaging/smoke_test.sh dist/vizapp_0.1.0_amd64.deb   # installs, checks, removes
#
# Each check runs in a clean environment: `env -i`, a temporary HOME, a PATH holding no
# Python (only the few tools the checks themselves use), and no network (a namespace of its
# own, when `unshare` is allowed). It runs the bundled `vizapp doctor`, predicts the cat with
# EfficientNet-Lite0 and a shipped digit with vit_digits, takes a screenshot offscreen and,
# where `xvfb-run` exists, opens the real (xcb) window under Xvfb. For a .deb it also checks
# the desktop entry, then removes the package and checks nothing is left behind.
# Exit status 0 when every check passes; the first failure stops it with a line saying which.
set -euo pipefail

target=${1:?usage: packaging/smoke_test.sh DIST_FOLDER | PACKAGE.deb | PACKAGE.tar.gz}
work=$(mktemp -d /tmp/vizapp-smoke.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "SMOKE FAIL: $*" >&2; exit 1; }
pass() { echo "ok   $*"; }

deb=""
case "$target" in
  *.deb)
    [ "$(id -u)" = 0 ] || fail "installing a .deb needs root"
    deb=$target
    dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
    app=/usr/bin/vizapp
    pass "dpkg -i installed $(dpkg-query -W -f='${Package} ${Version}' vizapp)"
    [ -x /opt/vizapp/vizapp ] || fail "/opt/vizapp/vizapp is missing"
    [ -f /usr/share/applications/vizapp.desktop ] || fail "no desktop entry"
    [ -f /usr/share/icons/hicolor/256x256/apps/vizapp.png ] || fail "no icon"
    if command -v desktop-file-validate >/dev/null; then
      desktop-file-validate /usr/share/applications/vizapp.desktop || fail "the desktop entry does not validate"
      pass "desktop entry validates (the applications menu lists it)"
    else
      grep -q '^Exec=/usr/bin/vizapp' /usr/share/applications/vizapp.desktop || fail "desktop entry's Exec"
      pass "desktop entry installed (desktop-file-validate not installed)"
    fi
    ;;
  *.tar.gz)
    tar -C "$work" -xzf "$target" || fail "cannot unpack $target"
    app=$work/vizapp/vizapp
    ;;
  *)
    app=$(cd "$target" && pwd)/vizapp
    ;;
esac
[ -x "$app" ] || fail "$app is not an executable"

# A PATH with no Python on it: only what the checks use (ldd for the doctor's library check).
mkdir -p "$work/bin" "$work/home"
for tool in ldd sh; do
  if command -v "$tool" >/dev/null; then ln -s "$(command -v "$tool")" "$work/bin/$tool"; fi
done
netless=()
if unshare -n true 2>/dev/null; then netless=(unshare -n); fi

run() {  # run VIZAPP_ARGS... in the clean environment
  "${netless[@]}" env -i HOME="$work/home" PATH="$work/bin" LANG=C.UTF-8 \
    QT_QPA_PLATFORM="${QPA:-offscreen}" ${DISPLAY:+DISPLAY=$DISPLAY} "$app" "$@"
}

if env -i PATH="$work/bin" sh -c 'command -v python3 || command -v python' >/dev/null 2>&1; then
  fail "the clean PATH still has a Python"
fi
[ ${#netless[@]} -gt 0 ] && pass "no network: the checks run in a network namespace of their own" \
  || echo "note no network namespace here (unshare -n refused); the checks run with the machine's network"

run doctor --json > "$work/doctor.json" || { cat "$work/doctor.json"; fail "vizapp doctor failed"; }
pass "vizapp doctor: $(grep -o '"status": "[A-Z]*"' "$work/doctor.json" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')"

run predict --model efficientnet_lite0 --image chelsea --json > "$work/cat.json" || fail "predict efficientnet_lite0"
grep -q '"label": "tiger cat"' "$work/cat.json" || grep -q '"label": "tabby' "$work/cat.json" \
  || { head -c 400 "$work/cat.json"; fail "EfficientNet-Lite0 does not see a cat in chelsea"; }
pass "predict efficientnet_lite0 chelsea: $(head -c 60 "$work/cat.json")..."

run predict --model vit_digits --image digit3 --json > "$work/digit.json" || fail "predict vit_digits"
head -c 200 "$work/digit.json" | grep -q '"label": "3"' || { head -c 300 "$work/digit.json"; fail "vit_digits does not read digit3 as 3"; }
pass "predict vit_digits digit3: $(head -c 60 "$work/digit.json")..."

run screenshot --out "$work/window.png" >/dev/null 2>&1 || fail "screenshot (offscreen)"
[ -s "$work/window.png" ] || fail "the offscreen screenshot is empty"
pass "screenshot offscreen: $(wc -c < "$work/window.png") bytes"

if command -v xvfb-run >/dev/null; then
  # The real window: Qt's xcb platform plugin on an X server (Xvfb), no offscreen shortcut.
  # xvfb-run sets DISPLAY and XAUTHORITY; the wrapper passes only those into the clean environment. The X
  # server runs inside the same network namespace as the app (its socket is per namespace).
  cat > "$work/xrun.sh" <<EOS
#!/bin/sh
exec env -i HOME="$work/home" PATH="$work/bin" LANG=C.UTF-8 QT_QPA_PLATFORM=xcb DISPLAY="\$DISPLAY" XAUTHORITY="\$XAUTHORITY" "$app" "\$@"
EOS
  "${netless[@]}" xvfb-run -a -s "-screen 0 1600x1000x24" sh "$work/xrun.sh" doctor --json > "$work/doctor-xcb.json" 2>/dev/null \
    || { cat "$work/doctor-xcb.json"; fail "vizapp doctor under Xvfb (xcb)"; }
  "${netless[@]}" xvfb-run -a -s "-screen 0 1600x1000x24" sh "$work/xrun.sh" screenshot --out "$work/xcb.png" >/dev/null 2>&1 \
    || fail "the window under Xvfb (xcb)"
  [ -s "$work/xcb.png" ] || fail "the Xvfb screenshot is empty"
  pass "window under Xvfb (xcb): doctor passes, screenshot $(wc -c < "$work/xcb.png") bytes"
else
  echo "note xvfb-run is not installed: the real-window check was skipped (apt-get install xvfb)"
fi
cp "$work/window.png" "${SMOKE_SHOT:-/tmp/vizapp-smoke.png}" 2>/dev/null || true

if [ -n "$deb" ]; then
  dpkg -r vizapp >/dev/null || fail "dpkg -r vizapp"
  [ ! -e /opt/vizapp ] || fail "/opt/vizapp is left after dpkg -r: $(find /opt/vizapp | head -5)"
  [ ! -e /usr/share/applications/vizapp.desktop ] || fail "the desktop entry is left after dpkg -r"
  [ ! -e /usr/bin/vizapp ] || fail "/usr/bin/vizapp is left after dpkg -r"
  pass "dpkg -r removed /opt/vizapp, /usr/bin/vizapp and the desktop entry"
fi
echo "SMOKE PASS: $target"
