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
