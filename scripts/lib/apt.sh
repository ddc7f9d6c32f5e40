# Sourced by scripts/setup*.sh: installs the Debian packages that are missing, and only those.
# Usage: apt_install_missing LABEL PACKAGE...
apt_install_missing() {
  local label=$1; shift
  local missing=() p sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "$label: everything already installed"
    return 0
  fi
  echo "$label: installing ${missing[*]}"
  # tshark asks whether non-root users may capture; answer "no" so nothing prompts.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}
