# Shared by scripts/install and scripts/test (sourced, not run).

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (install what it installs yourself, then run this again)"
  fi
}

# A command from the system's package manager when it is missing: ensure_command COMMAND [PACKAGE].
ensure_command() {
  local command=$1 package=${2:-$1}
  if command -v "$command" >/dev/null 2>&1; then
    return
  fi
  say "installing $package (for $command)"
  if command -v apt-get >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
  elif command -v brew >/dev/null 2>&1; then brew install "$package"
  elif command -v dnf >/dev/null 2>&1; then as_root dnf install -y "$package"
  elif command -v yum >/dev/null 2>&1; then as_root yum install -y "$package"
  elif command -v apk >/dev/null 2>&1; then as_root apk add "$package"
  elif command -v pacman >/dev/null 2>&1; then as_root pacman -S --noconfirm "$package"
  elif command -v zypper >/dev/null 2>&1; then as_root zypper install -y "$package"
  else die "no known package manager to install $package with; install it yourself"
  fi
  command -v "$command" >/dev/null 2>&1 || die "$command still not found after installing $package"
}

# tmux 3.2 or newer.
ensure_tmux() {
  ensure_command tmux
}

# OpenSSH's server, for the tests' own sshd (tests/fakes/sshd.py: a throwaway one on 127.0.0.1 and a
# free port). Only the binary is wanted: the system service is neither started nor left enabled.
ensure_sshd() {
  [ -x /usr/sbin/sshd ] && return
  command -v apt-get >/dev/null 2>&1 ||
    die "/usr/sbin/sshd is needed for the remote-host tests: install OpenSSH's server (it need not run)"
  say "installing openssh-server (for /usr/sbin/sshd; the system service is not started)"
  # Exit 101 from policy-rc.d tells Debian's maintainer scripts not to start the service. Ours only
  # while we install, and only where the machine has none of its own (Docker images do).
  local policy=/usr/sbin/policy-rc.d ours=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# dev-sessions scripts/test: no service starts while openssh-server installs\nexit 101\n' |
      as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    ours=1
  fi
  local failed=""
  { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      openssh-server >/dev/null; } || failed=1
  [ -z "$ours" ] || as_root rm -f "$policy"
  [ -z "$failed" ] || die "installing openssh-server failed"
  # Under systemd the package enables ssh.service (and may have started it despite policy-rc.d):
  # nothing may listen on port 22 because of us.
  if [ -d /run/systemd/system ]; then
    as_root systemctl disable --now --quiet ssh.service ssh.socket 2>/dev/null || true
  elif [ -x /etc/init.d/ssh ] && /etc/init.d/ssh status >/dev/null 2>&1; then
    as_root /etc/init.d/ssh stop >/dev/null
  fi
  [ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd still not found after installing openssh-server"
}

# PostgreSQL's server binaries, for the messaging tests' own throw-away server (tests/fakes/postgres.py
# runs initdb and postgres in a temp dir). Only the binaries are wanted: the system's cluster is
# neither started nor needed (Debian's package would make and start one; policy-rc.d stops that).
ensure_postgres() {
  if [ -n "${DEV_SESSIONS_TEST_PG_BIN:-}" ] && [ -x "$DEV_SESSIONS_TEST_PG_BIN/postgres" ]; then return; fi
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && return
  command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && return
  if ! command -v apt-get >/dev/null 2>&1; then
    command -v brew >/dev/null 2>&1 && { brew install postgresql; return; }
    die "PostgreSQL's server (postgres, initdb) is needed for the messaging tests: install it (it need not run)"
  fi
  say "installing postgresql (for initdb and postgres; the system's cluster is not started)"
  local policy=/usr/sbin/policy-rc.d ours=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# dev-sessions scripts/test: no service starts while postgresql installs\nexit 101\n' |
      as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    ours=1
  fi
  local failed=""
  { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      postgresql postgresql-contrib >/dev/null; } || failed=1
  [ -z "$ours" ] || as_root rm -f "$policy"
  [ -z "$failed" ] || die "installing postgresql failed"
  if [ -d /run/systemd/system ]; then
    as_root systemctl disable --now --quiet postgresql.service 2>/dev/null || true
  fi
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null ||
    die "postgres still not found after installing postgresql"
}

# A Python 3.10+ to build virtual environments with.
find_python() {
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
  die "Python 3.10 or newer (with venv) is needed"
}

# A headless Chromium for the dashboard's browser tests (driven through Playwright's Python API with
# the system's binary; Playwright downloads no browser). DEV_SESSIONS_CHROMIUM names one elsewhere.
ensure_chromium() {
  [ -n "${DEV_SESSIONS_CHROMIUM:-}" ] && [ -x "$DEV_SESSIONS_CHROMIUM" ] && return
  command -v chromium >/dev/null 2>&1 && return
  command -v chromium-browser >/dev/null 2>&1 && return
  ensure_command chromium chromium
}
