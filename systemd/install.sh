#!/usr/bin/env bash
# Put the agent in place as a systemd service on this box:
#   sudo systemd/install.sh [--prefix DIR] [--config FILE] [--no-start]
# PREFIX (default: this checkout) holds the set-up checkout (run ./dev setup there first). The script
#  - creates the system user 'edge-agent' (groups dialout and video: serial detectors, V4L2 cameras),
#  - installs /etc/systemd/system/edge-agent.service with PREFIX filled in,
#  - puts a config at /etc/edge-agent/config.yaml (FILE, default configs/field-box.yaml; never overwrites),
#  - makes /var/lib/edge-agent (state: incident log, snapshots, models) and copies the provisioned models,
#  - checks the unit (systemd-analyze verify), reloads systemd, enables and starts the service.
# DESTDIR=/some/root installs into a staging root instead (no user, no systemctl): for packaging and tests.
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$SRC"
CONFIG="$SRC/configs/field-box.yaml"
START=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --no-start) START=0; shift ;;
    *) echo "unknown option $1; see the comment at the top of $0" >&2; exit 2 ;;
  esac
done
D="${DESTDIR:-}"
say() { printf '==> %s\n' "$*" >&2; }

[ -x "$PREFIX/.venv/bin/edge-agent" ] || { echo "$PREFIX/.venv/bin/edge-agent missing: run ./dev setup in $PREFIX" >&2; exit 1; }
"$PREFIX/.venv/bin/edge-agent" check-config "$CONFIG" >/dev/null

if [ -z "$D" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }
  if ! id edge-agent >/dev/null 2>&1; then
    say "creating system user edge-agent"
    useradd --system --home-dir /var/lib/edge-agent --shell /usr/sbin/nologin edge-agent
  fi
  for g in dialout video; do getent group "$g" >/dev/null && usermod -a -G "$g" edge-agent; done
fi

say "unit: $D/etc/systemd/system/edge-agent.service"
install -d "$D/etc/systemd/system" "$D/etc/edge-agent" "$D/var/lib/edge-agent/models"
sed "s#@PREFIX@#$PREFIX#g" "$SRC/systemd/edge-agent.service" > "$D/etc/systemd/system/edge-agent.service"
# ProtectHome=yes hides /home, /root and /run/user: where the checkout or the virtualenv's Python lives there,
# the unit gets an empty tmpfs over them instead, with only those folders bound in read-only.
hidden=()
for p in "$(readlink -f "$PREFIX")" "$("$PREFIX/.venv/bin/python" -c 'import sys; print(sys.base_prefix)')"; do
  case "$p" in /home|/home/*|/root|/root/*|/run/user/*) hidden+=("$p") ;; esac
done
if [ ${#hidden[@]} -gt 0 ]; then
  say "the agent lives under a home folder (${hidden[*]}): ProtectHome=tmpfs with those folders bound read-only"
  sed -i "s#^ProtectHome=yes#ProtectHome=tmpfs\nBindReadOnlyPaths=${hidden[*]}#" \
    "$D/etc/systemd/system/edge-agent.service"
fi
chmod 0644 "$D/etc/systemd/system/edge-agent.service"
if [ ! -e "$D/etc/edge-agent/config.yaml" ]; then
  say "config: $D/etc/edge-agent/config.yaml (from $CONFIG; edit it, then: systemctl reload edge-agent)"
  install -m 0640 "$CONFIG" "$D/etc/edge-agent/config.yaml"
else
  say "config: $D/etc/edge-agent/config.yaml kept as it is"
fi
if [ -d "$SRC/.state/models" ]; then
  say "models: copying the provisioned models into $D/var/lib/edge-agent/models"
  cp -a "$SRC/.state/models/." "$D/var/lib/edge-agent/models/"
fi
if [ -z "$D" ]; then
  chown -R edge-agent:edge-agent /var/lib/edge-agent
  chgrp edge-agent /etc/edge-agent/config.yaml
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify "$D/etc/systemd/system/edge-agent.service"
fi
if [ -z "$D" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable edge-agent.service
  if [ "$START" -eq 1 ]; then
    "$PREFIX/.venv/bin/edge-agent" doctor --config /etc/edge-agent/config.yaml || say "doctor found problems: fix them, then systemctl restart edge-agent"
    systemctl restart edge-agent.service
    say "started; follow it with: journalctl -u edge-agent -f"
  fi
fi
say "done"
