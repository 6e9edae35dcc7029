# Shared by scripts/install and scripts/test (sourced, not run).

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (install tmux yourself, then run this again)"
  fi
}

# tmux 3.2 or newer, from the system's package manager when it is missing.
ensure_tmux() {
  if command -v tmux >/dev/null 2>&1; then
    return
  fi
  say "installing tmux"
  if command -v apt-get >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
  elif command -v brew >/dev/null 2>&1; then brew install tmux
  elif command -v dnf >/dev/null 2>&1; then as_root dnf install -y tmux
  elif command -v yum >/dev/null 2>&1; then as_root yum install -y tmux
  elif command -v apk >/dev/null 2>&1; then as_root apk add tmux
  elif command -v pacman >/dev/null 2>&1; then as_root pacman -S --noconfirm tmux
  elif command -v zypper >/dev/null 2>&1; then as_root zypper install -y tmux
  else die "no known package manager to install tmux with; install tmux 3.2+ yourself"
  fi
  command -v tmux >/dev/null 2>&1 || die "tmux still not found after installing it"
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
