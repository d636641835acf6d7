# Shared helpers of the install scripts (sourced, not run).

log() { printf '[%s] %s\n' "${LOG_TAG:-setup}" "$*"; }

# apt_install_missing PKG...: install with apt-get (through sudo when not root) the packages
# dpkg does not know yet; runs `apt-get update` only when something is missing. Without
# apt-get, it says what to install by hand and returns 0.
apt_install_missing() {
    if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        log "no apt-get here: make sure these are installed yourself: $*"
        return 0
    fi
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "packages present: $*"
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    log "installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
