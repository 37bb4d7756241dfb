# Sourced by modelbuild/build.sh and modelbuild/dlr/build.sh: one build venv, kept while its inputs
# are unchanged.
#
#   ensure_venv VENV PIP_LOG REQUIREMENTS [NO_DEPS_REQUIREMENTS]
#
# (Re)creates VENV only when it is missing or when the stamp (sha256 of the requirement files and
# `$PYTHON -VV`) changed; installs REQUIREMENTS, then NO_DEPS_REQUIREMENTS with --no-deps, then
# `pip check`, all into PIP_LOG. On failure prints the log's last lines and exits 1.

ensure_venv() {
    local venv="$1" log="$2" req="$3" req_nodeps="${4:-}"
    local name="${venv#"$ROOT"/}" stamp="$venv/.requirements.sha256" want t0
    want="$( (cat "$req" ${req_nodeps:+"$req_nodeps"}; "$PYTHON" -VV) | sha256sum | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ "$want" = "$(cat "$stamp" 2>/dev/null || true)" ]; then
        echo "[venv] $name is up to date ($(du -sh "$venv" | cut -f1))"
        return 0
    fi
    echo "[venv] creating $name and installing ${req#"$ROOT"/} (pip log: ${log#"$ROOT"/})…"
    t0=$(date +%s)
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    local pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)
    {
        "${pip[@]}" install -r "$req" &&
        { [ -z "$req_nodeps" ] || "${pip[@]}" install --no-deps -r "$req_nodeps"; } &&
        "${pip[@]}" check
    } >"$log" 2>&1 || {
        echo "[venv] pip install FAILED; last lines of ${log#"$ROOT"/}:" >&2
        grep -v "^WARNING: Location" "$log" | tail -20 >&2
        exit 1
    }
    echo "$want" >"$stamp"
    echo "[venv] installed in $(( $(date +%s) - t0 )) s, venv size $(du -sh "$venv" | cut -f1)"
}
