#!/usr/bin/env python3
"""Structural checks of the example apps' container files, run by
scripts/check-docker.sh: their runtime stages in the Dockerfile (built by
its one shared builder; the file's common checks run above) and the compose
profile "apps" (its resolved JSON on argv[1], or docker-compose.yml parsed
with PyYAML). Prints "ok|FAIL|note<TAB>message".
"""
import glob
import json
import os
import re
import sys

import yaml

DOCKERFILE = "Dockerfile"
# (binary = package = compose service = build target, member dir)
APPS = [("botfactory", "examples/botfactory"), ("chat", "examples/chat")]
# PRODUCT.md "The seeds' other systems": the settings compose must set.
COMMON = ["DATABASE_URL", "APP_ADDR", "GATEHOUSE_URL", "JWT_ISSUER", "JWT_AUDIENCE",
          "GATEHOUSE_REDIS_URL", "GATEHOUSE_REDIS_NAMESPACE", "RUST_LOG", "LOG_FORMAT"]
EXTRA = {"chat": ["REDIS_URL", "REDIS_NAMESPACE"]}
DB_SQL = "examples/compose/create-databases.sql"

out = []
def ok(m): out.append(("ok", m))
def bad(m): out.append(("FAIL", m))
def note(m): out.append(("note", m))
def check(cond, m): (ok if cond else bad)(m)

def read(p):
    with open(p, encoding="utf-8") as fh:
        return fh.read()

def load_toml(p):
    import tomllib
    with open(p, "rb") as fh:
        return tomllib.load(fh)

def instructions(text):
    """[(INSTR, args)] with continuation lines joined, comments dropped."""
    res, buf = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if (not buf and (not s or s.startswith("#"))) or (buf and s.startswith("#")):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        parts = buf.split(None, 1)
        res.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        buf = ""
    return res

def stages(instr):
    """{stage name: [(INSTR, args)]} in order, plus the FROM of each."""
    by, froms, cur = {}, {}, None
    for i, a in instr:
        if i == "FROM":
            words = a.split()
            cur = words[-1].lower() if len(words) >= 3 and words[-2].upper() == "AS" else f"#{len(by)}"
            by[cur], froms[cur] = [], words[0]
        elif cur is not None:
            by[cur].append((i, a))
    return by, froms

# ------------------------------------------------------------ Dockerfile
if not os.path.isfile(DOCKERFILE):
    bad(f"{DOCKERFILE} is missing")
else:
    text = read(DOCKERFILE)
    instr = instructions(text)
    by, froms = stages(instr)
    runs = " ".join(a for i, a in by.get("builder", []) if i == "RUN")
    build = next((a for i, a in by.get("builder", []) if i == "RUN" and "cargo build" in a), "")
    everything = "--workspace" in build and "--bins" in build
    rt = by.get("runtime", [])
    for app, _ in APPS:
        st = by.get(app, [])
        ports = [p for i, a in st if i == "EXPOSE" for p in a.split()]
        env = " ".join(a for i, a in st if i == "ENV")
        m = re.search(r"APP_ADDR=\S*:(\d+)", env)
        check(ports == ["8080"] and m is not None and m.group(1) == "8080",
              f"{DOCKERFILE}: {app}: EXPOSE 8080 and ENV APP_ADDR=...:8080 ({ports}, {m.group(0) if m else None})")
    settings = "examples/kit/src/settings.rs"
    check(os.path.isfile(settings) and 'default_value = "0.0.0.0:8080"' in read(settings),
          f"APP_ADDR default 0.0.0.0:8080 in {settings} matches EXPOSE")
    for app, member in APPS:
        manifest = os.path.join(member, "Cargo.toml")
        if not os.path.isfile(manifest):
            bad(f"{manifest} missing"); continue
        cargo = load_toml(manifest)
        bins = [b.get("name") for b in cargo.get("bin", [])]
        check(cargo.get("package", {}).get("name") == app and app in bins,
              f"{manifest}: package and [[bin]] {app}")
        check(everything or (re.search(rf"-p {app}\b", runs) is not None and re.search(rf"--bin {app}\b", build) is not None),
              f"{DOCKERFILE}: the shared builder builds {app} (--workspace --bins, or -p/--bin {app})")
        st = by.get(app)
        if st is None:
            bad(f"{DOCKERFILE}: no stage `FROM runtime AS {app}`"); continue
        check(froms[app] == "runtime" and "distroless/cc-debian12" in froms.get("runtime", ""),
              f"{DOCKERFILE}: stage {app} is FROM runtime (distroless)")
        users = [a for i, a in rt + st if i == "USER"]
        check(bool(users) and re.fullmatch(r"[1-9]\d*:\d+", users[-1]) is not None,
              f"{DOCKERFILE}: stage {app} runs as a numeric non-root USER ({users[-1] if users else None})")
        copies = [a for i, a in st if i == "COPY"]
        check(any(f"--from=builder /app/target/release/{app} /usr/local/bin/{app}" in c for c in copies),
              f"{DOCKERFILE}: stage {app} copies its binary from the builder")
        hc = [a for i, a in st if i == "HEALTHCHECK"]
        check(bool(hc) and re.search(rf'CMD \["/usr/local/bin/{app}", "healthcheck"\]', hc[-1]) is not None,
              f"{DOCKERFILE}: stage {app} HEALTHCHECK runs `{app} healthcheck`")
        ep = [a for i, a in st if i == "ENTRYPOINT"]
        check(ep == [f'["/usr/local/bin/{app}"]'], f"{DOCKERFILE}: stage {app} ENTRYPOINT {ep}")
        main = os.path.join(member, "src/main.rs")
        check(os.path.isfile(main) and '"healthcheck"' in read(main), f"{main}: implements `healthcheck`")

# ------------------------------------------------------------ compose
compose_json = sys.argv[1] if len(sys.argv) > 1 else ""
if compose_json and os.path.isfile(compose_json) and os.path.getsize(compose_json) > 0:
    doc, how = json.load(open(compose_json)), "resolved `compose --profile apps config`"
else:
    doc, how = yaml.safe_load(read("docker-compose.yml")), "docker-compose.yml (PyYAML; anchors resolved, no interpolation)"
note(f"apps compose checks on {how}")
svcs = doc.get("services", {})
api = svcs.get("api", {})
api_env = api.get("environment") or {}

def env_of(s):
    e = svcs.get(s, {}).get("environment") or {}
    return e if isinstance(e, dict) else dict(x.split("=", 1) for x in e)

def published(s):
    res = []
    for p in svcs.get(s, {}).get("ports") or []:
        if isinstance(p, dict):
            res.append((int(p.get("published")), int(p.get("target"))))
        else:
            parts = str(p).split(":")
            res.append((int(parts[-2]), int(parts[-1].split("/")[0])))
    return res

def dep(s, on):
    d = svcs.get(s, {}).get("depends_on") or {}
    return d.get(on, {}).get("condition") if isinstance(d, dict) else None

cors = str(api_env.get("CORS_ALLOWED_ORIGINS", ""))
cors_default = re.search(r"CORS_ALLOWED_ORIGINS:\s*\$\{CORS_ALLOWED_ORIGINS:-([^}]*)\}", read("docker-compose.yml"))
if "${" in cors or not cors:
    cors = cors_default.group(1) if cors_default else cors
origins = {o.strip() for o in cors.split(",") if o.strip()}
sql = read(DB_SQL) if os.path.isfile(DB_SQL) else ""
check("apps-db" in svcs, "compose: one-shot service apps-db present")
adb = svcs.get("apps-db", {})
check(adb.get("profiles") == ["apps"] and dep("apps-db", "postgres") == "service_healthy",
      "compose: apps-db in profile apps, after postgres is healthy")
check(any(DB_SQL.split("/")[-1] in str(v) for v in adb.get("volumes") or []), f"compose: apps-db runs {DB_SQL}")
api_port = next((t for _, t in published("api")), 8000)
for app, member in APPS:
    s = svcs.get(app)
    if s is None:
        bad(f"compose: service {app} missing"); continue
    check(s.get("profiles") == ["apps"], f"compose: {app} in profile apps")
    b = s.get("build") or {}
    check(isinstance(b, dict) and os.path.normpath(b.get("dockerfile", "")).endswith(os.path.normpath(DOCKERFILE))
          and b.get("target") == app, f"compose: {app} builds {DOCKERFILE} --target {app}")
    t = (s.get("healthcheck") or {}).get("test")
    t = " ".join(t) if isinstance(t, list) else (t or "")
    check(f"/usr/local/bin/{app} healthcheck" in t, f"compose: {app} healthcheck runs `{app} healthcheck`")
    check(s.get("restart") == "unless-stopped" and s.get("read_only") is True and "ALL" in (s.get("cap_drop") or [])
          and any("no-new-privileges" in str(o) for o in s.get("security_opt") or []),
          f"compose: {app} hardened like Gatehouse (restart, read_only, cap_drop ALL, no-new-privileges)")
    check(dep(app, "apps-db") == "service_completed_successfully" and dep(app, "api") == "service_healthy",
          f"compose: {app} waits for apps-db and a healthy api")
    e = env_of(app)
    want = COMMON + EXTRA.get(app, [])
    missing = [v for v in want if v not in e]
    check(not missing, f"compose: {app} sets {len(want)} settings" + (f" (missing {missing})" if missing else ""))
    # Every setting the app reads must be one clap knows (no typos in compose).
    known = set()
    for p in glob.glob(os.path.join(member, "src", "**", "*.rs"), recursive=True) + glob.glob("examples/kit/src/*.rs"):
        known |= set(re.findall(r'env = "([A-Z0-9_]+)"', read(p)))
    unknown = sorted(set(e) - known)
    check(not unknown, f"compose: {app} environment names only settings it reads" + (f" (unknown {unknown})" if unknown else ""))
    db = str(e.get("DATABASE_URL", "")).rsplit("/", 1)[-1]
    check(db == app and f"CREATE DATABASE {app}" in sql, f"compose: {app} has its own database `{db}`, created by {DB_SQL}")
    check(str(e.get("APP_ADDR", "")).endswith(":8080") and any(tgt == 8080 for _, tgt in published(app)),
          f"compose: {app} listens on 8080 and publishes it ({published(app)})")
    check(e.get("GATEHOUSE_URL") == f"http://api:{api_port}", f"compose: {app} GATEHOUSE_URL = http://api:{api_port}")
    check(e.get("GATEHOUSE_PUBLIC_URL") == api_env.get("PUBLIC_URL"),
          f"compose: {app} GATEHOUSE_PUBLIC_URL = Gatehouse's PUBLIC_URL ({api_env.get('PUBLIC_URL')})")
    check(e.get("GATEHOUSE_REDIS_URL") == api_env.get("REDIS_URL"),
          f"compose: {app} follows revocations on Gatehouse's Redis")
    ns = api_env.get("REDIS_NAMESPACE", "gatehouse")
    check(e.get("GATEHOUSE_REDIS_NAMESPACE") == ns, f"compose: {app} GATEHOUSE_REDIS_NAMESPACE = {ns}")
    for host_port, _ in published(app):
        origin = f"http://localhost:{host_port}"
        check(origin in origins, f"compose: Gatehouse's CORS_ALLOWED_ORIGINS allows {origin} ({sorted(origins)})")
ce = env_of("chat")
check(ce.get("REDIS_NAMESPACE") not in (None, api_env.get("REDIS_NAMESPACE", "gatehouse")),
      "compose: the chat's fan-out namespace differs from Gatehouse's")
check(dep("chat", "redis") == "service_healthy", "compose: chat waits for a healthy redis")

for level, msg in out:
    print(f"{level}\t{msg}")
