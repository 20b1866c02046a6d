#!/usr/bin/python3
"""The deployment files agree with each other and with the configuration.

usage: manifests_test.py OCCASIONAL_BINARY

Kubernetes manifests parse as YAML and have the required fields; the
probes, ports and scrape settings point where the configuration says the
coordinator listens; the grace period outlasts the drain grace; the
configurations pass `occasional check`; compose and the dashboard parse.
An admin endpoint reachable from outside the pod or container has a token
read from a Secret (Kubernetes) or a secret file (compose), never inline,
and never --admin-insecure (docs/admin.md, "Security model").
"""
import json
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
C = os.path.join(ROOT, "containers")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def occasional_check(binary, text, label):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(text)
    r = subprocess.run([binary, "check", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    check(r.returncode == 0, f"{label}: occasional check failed: {r.stderr.strip()}")


def token_file_arg(args, label):
    """The --token-file path in a command line; None (and a failure) without one."""
    check("--admin-insecure" not in args, f"{label}: --admin-insecure in a shipped file")
    check("--token" not in args, f"{label}: a token inline on the command line (use --token-file)")
    if "--token-file" not in args or args.index("--token-file") + 1 >= len(args):
        failures.append(f"{label}: the admin endpoint is not on loopback and has no --token-file")
        return None
    return args[args.index("--token-file") + 1]


def containerfile_copies_the_sources(containerfile):
    """The builder stage copies every directory the build reads: the root
    CMakeLists.txt's add_subdirectory outside tests, fuzz and bench, and the
    include directories the CMakeLists name under ${PROJECT_SOURCE_DIR}."""
    import re
    copied = set()
    for line in containerfile.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied.update(w.rstrip("/") for w in words[1:-1])
    needed = set()
    for d in re.findall(r"add_subdirectory\((\S+)\)", open(os.path.join(ROOT, "CMakeLists.txt")).read()):
        if not d.startswith(("tests", "bench")):
            needed.add(d)
    for d in list(needed):
        text = open(os.path.join(ROOT, d, "CMakeLists.txt")).read()
        needed.update(re.findall(r"\$\{PROJECT_SOURCE_DIR\}/([A-Za-z_]+)", text))
    for d in sorted(needed):
        check(d in copied, f"containers/Containerfile: the builder stage does not COPY {d}/, "
                           "which the build reads")


def main():
    binary = sys.argv[1]
    docs = [d for d in yaml.safe_load_all(open(os.path.join(C, "kubernetes", "occasional.yaml")))
            if d]
    by_kind = {d["kind"]: d for d in docs}
    for kind in ("ConfigMap", "Deployment", "Service", "PodMonitor"):
        check(kind in by_kind, f"no {kind} in kubernetes/occasional.yaml")
        if kind in by_kind:
            for key in ("apiVersion", "metadata"):
                check(key in by_kind[kind], f"{kind} has no {key}")
    config_text = by_kind["ConfigMap"]["data"]["occasional.json"]
    occasional_check(binary, config_text, "ConfigMap occasional.json")
    config = json.loads(config_text)
    http_port = port_of(config["listeners"][0]["address"])
    admin_address = config["admin"]["address"]
    check(not admin_address.startswith("127."),
          "the ConfigMap's admin endpoint must be reachable by the kubelet's probes")
    admin_port = port_of(admin_address)
    max_grace = max(s.get("grace", 10) for s in config["services"].values())

    dep = by_kind["Deployment"]
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("http") == http_port, f"containerPort http {ports.get('http')} != {http_port}")
    check(ports.get("admin") == admin_port,
          f"containerPort admin {ports.get('admin')} != {admin_port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path, f"{probe} path {get.get('path')} != {path}")
        check(get.get("port") in ("admin", admin_port), f"{probe} port {get.get('port')}")
    check(spec.get("terminationGracePeriodSeconds", 30) > max_grace,
          f"terminationGracePeriodSeconds must exceed the drain grace {max_grace}")
    check("requests" in c.get("resources", {}), "no resource requests")
    # The admin endpoint listens beyond loopback (for the kubelet): its token
    # comes from a Secret mounted as a file, not from the ConfigMap.
    check("token" not in config["admin"] and not config["admin"].get("insecure"),
          "the ConfigMap's admin has an inline token or insecure: true")
    token_path = token_file_arg(c.get("args", []), "Deployment")
    if token_path:
        secret_volumes = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
        mounts = [m for m in c.get("volumeMounts", []) if m["name"] in secret_volumes]
        check(any(token_path.startswith(m["mountPath"].rstrip("/") + "/") for m in mounts),
              f"--token-file {token_path} is not in a volume mounted from a Secret")
        for m in mounts:
            check(m.get("readOnly") is True, f"the Secret volume {m['name']} is not read-only")
            secret = secret_volumes[m["name"]]
            check(secret.get("optional") is not True,
                  "the token Secret is optional: a pod would start without it")
            keys = [i["path"] for i in secret.get("items", [])]
            check(token_path[len(m["mountPath"].rstrip("/")) + 1:] in keys or not keys,
                  f"the Secret volume does not hold {token_path}")
    check(not any(d["kind"] == "Secret" and ("data" in d or "stringData" in d) for d in docs),
          "the manifest ships a Secret's value: every installation would share the token")
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true", "no prometheus.io/scrape annotation")
    check(ann.get("prometheus.io/port") == str(admin_port), "prometheus.io/port != admin port")
    check(ann.get("prometheus.io/path") == "/metrics", "prometheus.io/path != /metrics")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = by_kind["Service"]["spec"]
    check(all(labels.get(k) == v for k, v in svc["selector"].items()),
          "the Service selector does not match the pod labels")
    check(svc["ports"][0]["targetPort"] in ("http", http_port), "Service targetPort")
    pm = by_kind["PodMonitor"]["spec"]
    check(pm["podMetricsEndpoints"][0]["port"] == "admin", "PodMonitor port")
    check(pm["podMetricsEndpoints"][0]["path"] == "/metrics", "PodMonitor path")

    image_config = open(os.path.join(C, "occasional.json")).read()
    occasional_check(binary, image_config, "containers/occasional.json")
    image_admin = json.loads(image_config)["admin"]["address"]
    containerfile = open(os.path.join(C, "Containerfile")).read()
    containerfile_copies_the_sources(containerfile)
    check(f'"--admin", "{image_admin}", "health"' in containerfile,
          "the HEALTHCHECK must ask the admin address of the image's configuration")
    check("STOPSIGNAL SIGTERM" in containerfile, "no STOPSIGNAL SIGTERM")
    check(image_admin.startswith("127.0.0.1:"),
          "the image keeps the admin endpoint on loopback unless configured otherwise")

    compose = yaml.safe_load(open(os.path.join(C, "compose.yaml")))
    check({"occasional", "prometheus", "grafana"} <= set(compose["services"]),
          "compose needs occasional, prometheus and grafana")
    occ = compose["services"]["occasional"]
    cmd = occ.get("command", [])
    admin_arg = cmd[cmd.index("--admin") + 1] if "--admin" in cmd else image_admin
    if not admin_arg.startswith("127.") and admin_arg != "off":
        token_path = token_file_arg(cmd, "compose")
        if token_path:
            names = [x if isinstance(x, str) else x.get("source") for x in occ.get("secrets", [])]
            check(any(token_path == f"/run/secrets/{n}" for n in names),
                  f"compose: --token-file {token_path} is not one of the service's secrets")
            for n in names:
                top = compose.get("secrets", {}).get(n, {})
                check("file" in top or "environment" in top,
                      f"compose: secret {n} has no file or environment source")
    prom = yaml.safe_load(open(os.path.join(C, "prometheus", "prometheus.yml")))
    target = prom["scrape_configs"][0]["static_configs"][0]["targets"][0]
    check(target == "occasional:9090", f"Prometheus scrapes {target}")
    dash = json.load(open(os.path.join(C, "grafana", "occasional-dashboard.json")))
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in ("occasional_worker_exits_total", "occasional_worker_restarts_total",
                   "occasional_workers", "occasional_connections_handed_off_total",
                   "occasional_handoff_duration_seconds_bucket"):
        check(metric in exprs, f"the dashboard does not show {metric}")

    for f in failures:
        print("manifests_test: FAIL:", f, file=sys.stderr)
    print("manifests_test:", "ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
