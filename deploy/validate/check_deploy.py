#!/usr/bin/env python3
"""Checks for deploy/: run by .ci/validate-deploy.sh, which installs the tools it needs.

Subcommands (each prints what it checked and exits non-zero on the first class of failure):
  sync-rules ROOT [--write]   PrometheusRule == header + deploy/prometheus/alerts.yaml
  kustomization DIR           every file the kustomization names exists; no stray manifests
  manifests RENDERED NAME ... schema-validate built-in kinds (kubernetes-validate, strict),
                              write the CRD objects out for check_crds.mjs, and check how the
                              objects fit together (selectors, ports, probes, grace periods)
  config TOML                 config.toml against the product's documented keys
  dockerfile ROOT             base ARGs, entrypoint/cmd, ports, user, build flags, ignore file
  grafana JSON PROMRULES_OUT  dashboard structure; metric names; writes every expression
                              into a rules file for `promtool check rules` (PromQL syntax)
  metrics ROOT                the metric names used in alerts and the dashboard are
                              documented product metrics (and present in src/metrics.rs)
"""
import json
import os
import re
import sys
import tomllib

import yaml

# The product's metrics (docs: the metric list in README/contract and src/metrics.rs).
CONTRACT_METRICS = {
    "redis_master_proxy_backend_up": "gauge",
    "redis_master_proxy_backend_role": "gauge",
    "redis_master_proxy_backend_repl_offset": "gauge",
    "redis_master_proxy_master_info": "gauge",
    "redis_master_proxy_has_master": "gauge",
    "redis_master_proxy_route_epoch": "gauge",
    "redis_master_proxy_master_changes_total": "counter",
    "redis_master_proxy_split_brain_conflicts_total": "counter",
    "redis_master_proxy_split_brain": "gauge",
    "redis_master_proxy_route_paused": "gauge",
    "redis_master_proxy_route_pauses_total": "counter",
    "redis_master_proxy_backend_suspect": "gauge",
    "redis_master_proxy_uncorroborated_promotions_total": "counter",
    "redis_master_proxy_sentinel_contradicted_total": "counter",
    "redis_master_proxy_sentinel_events_ignored_total": "counter",
    "redis_master_proxy_client_connections_active": "gauge",
    "redis_master_proxy_client_connections_total": "counter",
    "redis_master_proxy_client_connections_max": "gauge",
    "redis_master_proxy_connections_drained_total": "counter",
    "redis_master_proxy_connections_refused_total": "counter",
    "redis_master_proxy_accept_errors_total": "counter",
    "redis_master_proxy_relay_bytes_total": "counter",
    "redis_master_proxy_check_duration_seconds": "histogram",
    "redis_master_proxy_check_failures_total": "counter",
    "redis_master_proxy_sentinel_up": "gauge",
    "redis_master_proxy_sentinel_disagreements_total": "counter",
    "redis_master_proxy_sentinel_events_total": "counter",
    "redis_master_proxy_config_reloads_total": "counter",
}

# Config keys the product accepts (unknown keys are rejected by the binary).
CONFIG_TOP = {"listen", "admin", "backends", "max_connections", "connect_timeout",
              "drain_timeout", "wait_for_master", "shutdown_grace", "relay",
              "health", "auth", "sentinel"}
CONFIG_HEALTH = {"interval", "timeout", "rise", "fall", "down_after"}
CONFIG_AUTH = {"username", "password_env", "password_file"}
CONFIG_SENTINEL = {"addresses", "master_name", "auth", "listen", "check_interval", "check_timeout"}
DURATION_KEYS = {"connect_timeout", "drain_timeout", "wait_for_master", "shutdown_grace"}

RULES_HEADER = """\
# Generated from deploy/prometheus/alerts.yaml by `bash .ci/validate-deploy.sh --sync-rules`;
# edit that file, not this one. CI fails when the two differ.
# prometheus-operator picks this up when the Prometheus resource's ruleSelector matches its
# labels (kube-prometheus-stack: `release: <helm release name>`); add them in an overlay.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: redis-master-proxy
  labels:
    app.kubernetes.io/name: redis-master-proxy
    app.kubernetes.io/component: alerts
spec:
"""

FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print(f"  FAIL {msg}")


def ok(msg):
    print(f"  ok   {msg}")


def check(cond, msg):
    if cond:
        ok(msg)
    else:
        fail(msg)
    return cond


def finish():
    if FAILURES:
        print(f"  {len(FAILURES)} problem(s)")
        sys.exit(1)


def parse_duration(s):
    """Go/Prometheus style durations: 500ms, 1s, 1m30s."""
    if not isinstance(s, str) or not s:
        raise ValueError(f"not a duration: {s!r}")
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    pos, total = 0, 0.0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h)", s):
        if m.start() != pos:
            raise ValueError(f"not a duration: {s!r}")
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"not a duration: {s!r}")
    return total


# ----------------------------------------------------------------------------- rules sync

def rules_text(root):
    src = open(os.path.join(root, "deploy/prometheus/alerts.yaml")).read().splitlines()
    # Drop the leading comment block of alerts.yaml; indent the rest under `spec:`.
    i = 0
    while i < len(src) and (src[i].startswith("#") or not src[i].strip()):
        i += 1
    body = "".join(("  " + line if line.strip() else "") + "\n" for line in src[i:])
    return RULES_HEADER + body


def cmd_sync_rules(root, write):
    path = os.path.join(root, "deploy/kubernetes/base/prometheusrule.yaml")
    want = rules_text(root)
    if write:
        with open(path, "w") as f:
            f.write(want)
        print(f"  wrote {path}")
        return
    have = open(path).read() if os.path.exists(path) else ""
    if have != want:
        import difflib
        diff = difflib.unified_diff(want.splitlines(), have.splitlines(),
                                    "expected (from alerts.yaml)", "prometheusrule.yaml",
                                    lineterm="", n=1)
        print("\n".join(list(diff)[:40]))
        fail("prometheusrule.yaml is not alerts.yaml under `spec:` "
             "(run: bash .ci/validate-deploy.sh --sync-rules)")
    else:
        ok("prometheusrule.yaml text == generated from alerts.yaml")
    alerts = yaml.safe_load(open(os.path.join(root, "deploy/prometheus/alerts.yaml")))
    pr = yaml.safe_load(have) if have else {}
    check(isinstance(pr, dict) and pr.get("spec") == alerts,
          "PrometheusRule .spec deep-equals alerts.yaml")
    finish()


# ------------------------------------------------------------------------ kustomization

def cmd_kustomization(d):
    k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
    named = set()
    for key in ("resources", "components"):
        for r in k.get(key) or []:
            named.add(r)
            p = os.path.join(d, r)
            check(os.path.exists(p), f"{d}: {key} entry {r} exists")
    for gen in (k.get("configMapGenerator") or []) + (k.get("secretGenerator") or []):
        for f in gen.get("files") or []:
            f = f.split("=", 1)[-1]
            named.add(f)
            check(os.path.isfile(os.path.join(d, f)), f"{d}: generator file {f} exists")
    for p in k.get("patches") or []:
        if "path" in p:
            named.add(p["path"])
            check(os.path.isfile(os.path.join(d, p["path"])), f"{d}: patch {p['path']} exists")
    # A manifest left in the directory but not listed would silently not be applied.
    for f in sorted(os.listdir(d)):
        if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml" \
                and not f.endswith(".example.yaml") and f not in named:
            fail(f"{d}: {f} is not listed in kustomization.yaml")
    ok(f"{d}: no unlisted manifests")
    finish()


# ---------------------------------------------------------------------------- manifests

BUILTIN_GROUPS = ("v1", "apps/v1", "policy/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1",
                  "batch/v1", "autoscaling/v2")
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
             ("monitoring.coreos.com/v1", "PrometheusRule"),
             ("monitoring.coreos.com/v1", "PodMonitor")}
PORT_NAME_RE = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
DNS1123_RE = re.compile(r"^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def selector_matches(sel, labels):
    """matchLabels/matchExpressions (or a plain Service selector map) against labels."""
    if sel is None:
        return False
    if "matchLabels" not in sel and "matchExpressions" not in sel:
        sel = {"matchLabels": sel}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return bool(sel.get("matchLabels") or sel.get("matchExpressions"))


def schema_validate(docs, versions):
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError
    crds = []
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        ident = f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
        if key in CRD_KINDS:
            crds.append(d)
            continue
        for v in versions:
            try:
                got = kubernetes_validate.validate(d, v, strict=True)
                ok(f"{ident}: valid against Kubernetes {got} schema (strict, no unknown fields)")
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                fail(f"{ident}: Kubernetes {v} schema: {path}: {e.message}")
            except SchemaNotFoundError as e:
                fail(f"{ident}: no schema for {key} in Kubernetes {v}: {e.message}")
    return crds


def check_names(docs):
    seen = set()
    for d in docs:
        md = d.get("metadata") or {}
        ident = (d.get("kind"), md.get("namespace"), md.get("name"))
        if ident in seen:
            fail(f"duplicate object {ident}")
        seen.add(ident)
        name = md.get("name") or ""
        rx = DNS1123_RE if d.get("kind") in ("Service", "Namespace") else DNS_SUBDOMAIN_RE
        if not rx.match(name):
            fail(f"{d.get('kind')}/{name}: invalid object name")
        for k, v in {**(md.get("labels") or {})}.items():
            if not isinstance(v, str) or not LABEL_VALUE_RE.match(v) or len(v) > 63:
                fail(f"{d.get('kind')}/{name}: bad label value {k}={v!r}")
    ok(f"{len(docs)} objects: names unique and valid, label values valid")


def probe_port(probe):
    for h in ("httpGet", "tcpSocket", "grpc"):
        if h in probe:
            return h, probe[h].get("port")
    if "exec" in probe:
        return "exec", None
    return None, None


def check_workload(docs, name, cfg_expect_ns):
    deps = [d for d in docs if d["kind"] == "Deployment"]
    if not check(len(deps) == 1, f"{name}: exactly one Deployment"):
        return
    dep = deps[0]
    spec = dep["spec"]
    tmpl = spec["template"]
    pod = tmpl["spec"]
    labels = tmpl["metadata"].get("labels") or {}
    dn = f"Deployment/{dep['metadata']['name']}"
    ns = dep["metadata"].get("namespace")
    check(ns == cfg_expect_ns, f"{dn}: namespace is {cfg_expect_ns!r}")
    for d in docs:
        if d["kind"] not in ("Namespace",) and (d.get("metadata") or {}).get("namespace") != ns:
            fail(f"{d['kind']}/{d['metadata']['name']}: namespace "
                 f"{d['metadata'].get('namespace')!r} differs from the Deployment's")
    check(spec.get("replicas") == 3, f"{dn}: 3 replicas")
    check(selector_matches(spec["selector"], labels), f"{dn}: selector matches its pod template")

    # Anti-affinity across nodes, selecting its own pods.
    aa = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
    terms = list(aa.get("requiredDuringSchedulingIgnoredDuringExecution") or []) + \
        [t["podAffinityTerm"] for t in aa.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    check(any(t.get("topologyKey") == "kubernetes.io/hostname"
              and selector_matches(t.get("labelSelector"), labels) for t in terms),
          f"{dn}: pod anti-affinity keeps its replicas on different nodes")
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    if aa.get("requiredDuringSchedulingIgnoredDuringExecution"):
        check(str(ru.get("maxSurge", "25%")) in ("0", "0%"),
              f"{dn}: maxSurge 0 (a surge pod cannot schedule under required anti-affinity "
              f"on a 3-node cluster)")

    # Security.
    psc = pod.get("securityContext") or {}
    check(psc.get("runAsNonRoot") is True, f"{dn}: pod runAsNonRoot")
    check(isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0, f"{dn}: numeric non-root runAsUser")
    check((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{dn}: seccomp RuntimeDefault")
    check(pod.get("automountServiceAccountToken") is False, f"{dn}: no service account token mounted")
    sa_name = pod.get("serviceAccountName")
    sas = [d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == sa_name]
    check(len(sas) == 1 and sas[0].get("automountServiceAccountToken") is False,
          f"{dn}: ServiceAccount {sa_name} exists with automountServiceAccountToken false")

    containers = pod["containers"]
    check(len(containers) == 1, f"{dn}: one container")
    c = containers[0]
    csc = c.get("securityContext") or {}
    check(csc.get("readOnlyRootFilesystem") is True, f"{dn}: readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, f"{dn}: allowPrivilegeEscalation false")
    check((csc.get("capabilities") or {}).get("drop") == ["ALL"]
          and not (csc.get("capabilities") or {}).get("add"), f"{dn}: all capabilities dropped, none added")
    res = c.get("resources") or {}
    check(all(k in (res.get("requests") or {}) for k in ("cpu", "memory"))
          and "memory" in (res.get("limits") or {}), f"{dn}: cpu/memory requests and a memory limit")

    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    for pn in ports:
        check(pn is not None and PORT_NAME_RE.match(pn) is not None, f"{dn}: port name {pn!r} is a valid IANA_SVC_NAME")
    check(ports.get("redis") == 6379 and ports.get("admin") == 8404,
          f"{dn}: container ports redis=6379, admin=8404")

    def resolves_to(port):
        return ports.get(port) if isinstance(port, str) else port

    # Probes: admin port only; liveness never on readiness' endpoint.
    probes = {k: c.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe") if c.get(k)}
    for k, p in probes.items():
        h, port = probe_port(p)
        check(h == "httpGet" and resolves_to(port) == 8404,
              f"{dn}: {k} is an HTTP GET on the admin port 8404 (never 6379, never exec)")
    rp, lp = probes.get("readinessProbe"), probes.get("livenessProbe")
    if check(rp is not None and lp is not None, f"{dn}: readiness and liveness probes present"):
        check(rp["httpGet"].get("path") == "/readyz", f"{dn}: readiness probes /readyz (= a master is known)")
        check(1 <= rp.get("periodSeconds", 10) <= 2, f"{dn}: readiness periodSeconds 1-2")
        check(lp["httpGet"].get("path") == "/livez", f"{dn}: liveness probes /livez (process alive, not master)")
        sp = probes.get("startupProbe")
        if sp:
            check(sp["httpGet"].get("path") == "/livez", f"{dn}: startup probe uses /livez, not /readyz")
        check(lp.get("periodSeconds", 10) * lp.get("failureThreshold", 3) >= 30,
              f"{dn}: liveness tolerates >= 30s of unresponsiveness before a restart")

    # Shutdown timing: preStop pause + shutdown_grace must fit in the grace period.
    pre = ((c.get("lifecycle") or {}).get("preStop") or {})
    sleep = (pre.get("sleep") or {}).get("seconds")
    check(isinstance(sleep, int) and sleep > 0 and "exec" not in pre,
          f"{dn}: preStop is a kubelet sleep (no shell needed in the image)")

    opts = {o.get("name"): o.get("value") for o in (pod.get("dnsConfig") or {}).get("options") or []}
    check(opts.get("ndots") is not None and int(opts["ndots"]) <= 4,
          f"{dn}: dnsConfig ndots <= 4, so the FQDN backends are looked up as written first")

    # Config: mounted ConfigMap, parsed.
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    m = mounts.get("/etc/redis-master-proxy")
    cfg = None
    if check(m is not None and m.get("readOnly") is True and "subPath" not in m,
             f"{dn}: config mounted read-only at /etc/redis-master-proxy (whole dir, no subPath)"):
        cm_name = (vols.get(m["name"]) or {}).get("configMap", {}).get("name")
        cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name]
        if check(len(cms) == 1 and "config.toml" in (cms[0].get("data") or {}),
                 f"{dn}: volume refers to rendered ConfigMap {cm_name} with config.toml"):
            check(re.search(r"-[a-z0-9]{10}$", cm_name) is not None,
                  f"{dn}: ConfigMap name carries the generator's content hash (config change rolls pods)")
            cfg = tomllib.loads(cms[0]["data"]["config.toml"])
    env = {e["name"]: e for e in c.get("env") or []}
    if cfg is not None:
        grace = pod.get("terminationGracePeriodSeconds", 30)
        sg = parse_duration(cfg.get("shutdown_grace", "10s"))
        check(grace > (sleep or 0) + sg,
              f"{dn}: terminationGracePeriodSeconds {grace} > preStop {sleep}s + shutdown_grace {sg:g}s")
        lport = int(cfg.get("listen", ":0").rsplit(":", 1)[1])
        aport = int(cfg.get("admin", ":0").rsplit(":", 1)[1])
        check(lport == ports.get("redis") and aport == ports.get("admin"),
              f"{dn}: config listen/admin ports ({lport}/{aport}) match the container ports")
        slisten = (cfg.get("sentinel") or {}).get("listen")
        if slisten:
            sport = int(slisten.rsplit(":", 1)[1])
            check(sport == ports.get("sentinel") and slisten.startswith("0.0.0.0:"),
                  f"{dn}: config sentinel.listen port {sport} is the container port `sentinel`, on all pod addresses")
        check(cfg.get("listen", "").startswith("0.0.0.0:") and cfg.get("admin", "").startswith("0.0.0.0:"),
              f"{dn}: config listens on all pod addresses (defaults are loopback-only)")
        for sect in (cfg.get("auth") or {}, (cfg.get("sentinel") or {}).get("auth") or {}):
            pe = sect.get("password_env")
            if pe:
                e = env.get(pe)
                check(e is not None and "secretKeyRef" in (e.get("valueFrom") or {}),
                      f"{dn}: password_env {pe} is set from a Secret")
        ann = tmpl["metadata"].get("annotations") or {}
        if ann.get("prometheus.io/scrape") == "true":
            check(ann.get("prometheus.io/port") == str(aport) and ann.get("prometheus.io/path") == "/metrics",
                  f"{dn}: prometheus.io annotations point at admin port {aport} /metrics")
    # Every Secret/ConfigMap reference must exist in the render or be the documented Secret.
    for e in env.values():
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            check(ref.get("name") == "redis-master-proxy-auth" and ref.get("optional") is not True,
                  f"{dn}: env {e['name']} from Secret redis-master-proxy-auth (required, created by the operator)")

    # Services select the pods and target existing ports.
    svcs = [d for d in docs if d["kind"] == "Service"]
    for s in svcs:
        sn = f"Service/{s['metadata']['name']}"
        check(selector_matches(s["spec"].get("selector"), labels), f"{sn}: selector matches the proxy pods")
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            check(resolves_to(tp) is not None, f"{sn}: port {p['port']} targets container port {tp!r}")
    client = [s for s in svcs if any(resolves_to(p.get("targetPort", p["port"])) == 6379 and p["port"] == 6379
                                     for p in s["spec"]["ports"])]
    check(len(client) == 1, f"{name}: exactly one Service exposes the proxies on 6379 "
                            f"({', '.join(s['metadata']['name'] for s in client)})")
    if "sentinel" in ports:
        check(len(client) == 1 and any(resolves_to(p.get("targetPort", p["port"])) == ports["sentinel"]
                                       and p["port"] == 26379 for p in client[0]["spec"]["ports"]),
              f"{name}: the client Service also exposes the sentinel listener on 26379")
    if name.startswith("overlays-side-by-side"):
        # The point of this overlay: HAProxy keeps the `redis-master` Service until the cutover.
        check(not any(s["metadata"]["name"] == "redis-master" for s in svcs),
              f"{name}: leaves the redis-master Service alone")

    # PodDisruptionBudget.
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    check(len(pdbs) == 1 and selector_matches(pdbs[0]["spec"]["selector"], labels)
          and pdbs[0]["spec"].get("minAvailable") == 2,
          f"{name}: PodDisruptionBudget minAvailable 2 selects the proxy pods")

    # NetworkPolicy.
    nps = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if check(len(nps) == 1 and selector_matches(nps[0]["spec"]["podSelector"], labels),
             f"{name}: NetworkPolicy selects the proxy pods"):
        np = nps[0]["spec"]
        check(set(np.get("policyTypes") or []) == {"Ingress", "Egress"}, f"{name}: NetworkPolicy covers ingress and egress")
        in_ports = {resolves_to(p.get("port")) for r in np.get("ingress") or [] for p in r.get("ports") or []}
        want_in = {6379, 8404} | ({ports["sentinel"]} if "sentinel" in ports else set())
        check(in_ports == want_in, f"{name}: NetworkPolicy admits {sorted(want_in)} only (got {sorted(in_ports)})")
        eg = {(p.get("protocol", "TCP"), p.get("port")) for r in np.get("egress") or [] for p in r.get("ports") or []}
        check({("TCP", 6379), ("TCP", 26379), ("UDP", 53), ("TCP", 53)} <= eg,
              f"{name}: NetworkPolicy lets out Redis 6379, sentinel 26379 and DNS 53/udp+tcp")
        if cfg is not None:
            want = {int(a.rsplit(":", 1)[1]) for a in cfg.get("backends", []) +
                    (cfg.get("sentinel") or {}).get("addresses", [])}
            check(want <= {p for _, p in eg}, f"{name}: every backend/sentinel port is allowed out")

    # ServiceMonitor -> admin Service -> admin port.
    for sm in [d for d in docs if d["kind"] == "ServiceMonitor"]:
        smn = f"ServiceMonitor/{sm['metadata']['name']}"
        targets = [s for s in svcs if selector_matches(sm["spec"].get("selector"), s["metadata"].get("labels") or {})]
        if check(len(targets) == 1, f"{smn}: selects exactly one Service "
                                    f"({', '.join(s['metadata']['name'] for s in targets)})"):
            names = {p.get("name") for p in targets[0]["spec"]["ports"]}
            for ep in sm["spec"]["endpoints"]:
                check(ep.get("port") in names, f"{smn}: endpoint port {ep.get('port')!r} is a port of that Service")
                tp = [p.get("targetPort") for p in targets[0]["spec"]["ports"] if p.get("name") == ep.get("port")]
                check(bool(tp) and resolves_to(tp[0]) == 8404 and ep.get("path", "/metrics") == "/metrics",
                      f"{smn}: scrapes /metrics on the admin port")


def cmd_examples(d, versions):
    """*.example.yaml files are not applied by kustomize; they must still be valid objects."""
    files = sorted(f for f in os.listdir(d) if f.endswith(".example.yaml"))
    for f in files:
        docs = [x for x in yaml.safe_load_all(open(os.path.join(d, f))) if x]
        schema_validate(docs, versions)
        for x in docs:
            if x.get("kind") == "Secret":
                vals = list((x.get("stringData") or {}).values()) + list((x.get("data") or {}).values())
                check(all("REPLACE" in str(v) for v in vals), f"{f}: Secret holds only placeholders")
    check(bool(files), f"{d}: {len(files)} example file(s) checked")
    finish()


def cmd_manifests(rendered, name, versions, crd_out, expect_ns):
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    print(f"  {name}: {len(docs)} objects: " + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs))
    check_names(docs)
    crds = schema_validate(docs, versions)
    with open(crd_out, "w") as f:
        json.dump(crds, f)
    check_workload(docs, name, expect_ns)
    finish()


# ---------------------------------------------------------------------------- config.toml

def cmd_config(path):
    cfg = tomllib.load(open(path, "rb"))
    ok(f"{path}: TOML parses")
    for keys, sect, label in ((CONFIG_TOP, cfg, "top level"), (CONFIG_HEALTH, cfg.get("health", {}), "[health]"),
                              (CONFIG_AUTH, cfg.get("auth", {}), "[auth]"),
                              (CONFIG_SENTINEL, cfg.get("sentinel", {}), "[sentinel]"),
                              (CONFIG_AUTH, (cfg.get("sentinel") or {}).get("auth", {}), "[sentinel.auth]")):
        unknown = set(sect) - keys
        check(not unknown, f"{path}: {label} has only known keys" + (f" (unknown: {sorted(unknown)})" if unknown else ""))
    for k in DURATION_KEYS:
        if k in cfg:
            try:
                parse_duration(cfg[k])
                ok(f"{path}: {k} = {cfg[k]!r} is a duration")
            except ValueError as e:
                fail(f"{path}: {k}: {e}")
    for k in ("interval", "timeout"):
        if k in cfg.get("health", {}):
            try:
                parse_duration(cfg["health"][k])
            except ValueError as e:
                fail(f"{path}: health.{k}: {e}")
    h = cfg.get("health", {})
    if "interval" in h and "timeout" in h:
        check(parse_duration(h["timeout"]) < parse_duration(h["interval"]), f"{path}: health timeout < interval")
    check(cfg.get("relay", "auto") in ("auto", "splice", "copy"), f"{path}: relay is auto|splice|copy")
    check(isinstance(cfg.get("max_connections", 1), int) and cfg.get("max_connections", 1) > 0,
          f"{path}: max_connections is a positive integer")
    addr_re = re.compile(r"^[a-z0-9.-]+:\d{1,5}$")
    bk = cfg.get("backends", [])
    check(len(bk) == 3 and all(addr_re.match(b) for b in bk) and len(set(bk)) == 3,
          f"{path}: three distinct HOST:PORT backends")
    check(all(re.match(r"^redis-v2-[0-2]\.redis-v2-headless\.redis\.svc\.cluster\.local:6379$", b) for b in bk),
          f"{path}: backends are the redis-v2 pods' stable DNS names (re-resolved, never pinned IPs)")
    s = cfg.get("sentinel")
    if s:
        check(s.get("master_name") == "mymaster", f"{path}: sentinel master_name mymaster")
        sa = s.get("addresses", [])
        check(len(sa) == 3 and all(addr_re.match(a) and a.endswith(":26379") for a in sa),
              f"{path}: three sentinel addresses on 26379")
        check({a.rsplit(":", 1)[0] for a in sa} == {b.rsplit(":", 1)[0] for b in bk},
              f"{path}: sentinels run on the backend pods")
        if "listen" in s:
            check(s["listen"] == "0.0.0.0:26379", f"{path}: sentinel.listen is 0.0.0.0:26379 (the Service's sentinel port)")
        for k in ("check_interval", "check_timeout"):
            if k in s:
                try:
                    parse_duration(s[k])
                except ValueError as e:
                    fail(f"{path}: sentinel.{k}: {e}")
    a = cfg.get("auth") or {}
    check(not ("password_env" in a and "password_file" in a), f"{path}: [auth] uses one of password_env/password_file")
    finish()


# ----------------------------------------------------------------------------- Dockerfile

def cmd_dockerfile(root):
    path = os.path.join(root, "deploy/Dockerfile")
    text = open(path).read()
    lines = []
    cur = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") and not cur:
            continue
        cur += raw.rstrip("\\") + " " if raw.endswith("\\") else raw
        if not raw.endswith("\\"):
            if cur.strip():
                lines.append(cur.strip())
            cur = ""
    instr = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]
    froms = [a for i, a in instr if i == "FROM"]
    check(len(froms) >= 2, f"{path}: multi-stage ({len(froms)} FROM)")
    # Base images are ARGs declared before the first FROM (a mirror is a --build-arg).
    first_from = next(n for n, (i, _) in enumerate(instr) if i == "FROM")
    global_args = dict(a.split("=", 1) for i, a in instr[:first_from] if i == "ARG" and "=" in a)

    def base(f):
        name = f.split()[0]
        m = re.fullmatch(r"\$\{?(\w+)\}?", name)
        return (m.group(1), global_args.get(m.group(1))) if m else (None, name)

    final_arg, final_from = base(froms[-1])
    check(final_arg is not None and final_from is not None,
          f"{path}: runtime base is a global ARG with a default ({froms[-1].split()[0]})")
    final_from = final_from or ""
    check(final_from.startswith("gcr.io/distroless/cc-debian12") or "slim" in final_from,
          f"{path}: runtime image {final_from} is distroless cc or debian-slim")
    builders = [base(f) for f in froms[:-1]]
    check(all(a is not None for a, _ in builders), f"{path}: builder base is a global ARG")
    check(any("bookworm" in (b or "") for _, b in builders), f"{path}: builder is Debian bookworm based")
    piped = [a for i, a in instr if i == "RUN" and re.search(r"[^|]\|[^|]", re.sub(r"'[^']*'", "", a))]
    check(not any(i == "SHELL" for i, _ in instr) and not piped,
          f"{path}: no SHELL and no pipes in RUN (buildah's OCI format ignores SHELL, so pipefail would be lost)")
    runs = " ".join(a for i, a in instr if i == "RUN")
    check("cargo build --release --locked" in runs, f"{path}: builds with cargo build --release --locked")
    # The dependency layer: manifests copied before the sources.
    copies = [(n, a) for n, (i, a) in enumerate(instr) if i == "COPY"]
    first_src = next((n for n, a in copies if re.search(r"(^|\s)(src/?|\./?)\s", a)), None)
    first_lock = next((n for n, a in copies if "Cargo.lock" in a), None)
    builds = [n for n, (i, a) in enumerate(instr) if i == "RUN" and "cargo build" in a]
    check(first_lock is not None and first_src is not None and builds and first_lock < builds[0] < first_src,
          f"{path}: dependency-caching layer (Cargo.toml/Cargo.lock built before src/ is copied)")
    last_stage = instr[max(n for n, (i, _) in enumerate(instr) if i == "FROM"):]
    user = [a for i, a in last_stage if i == "USER"]
    check(bool(user) and re.match(r"^\d+(:\d+)?$", user[-1]) and not user[-1].startswith("0"),
          f"{path}: final stage runs as a numeric non-root USER ({user[-1] if user else None})")
    exposed = set(" ".join(a for i, a in last_stage if i == "EXPOSE").replace("/tcp", "").split())
    check({"6379", "8404"} <= exposed, f"{path}: EXPOSE 6379 and 8404")
    def exec_form(name):
        vals = [a for i, a in last_stage if i == name]
        try:
            return json.loads(vals[-1]) if vals else []
        except json.JSONDecodeError:
            return []
    ep_list, cmd_list = exec_form("ENTRYPOINT"), exec_form("CMD")
    # The binary alone is the entrypoint, so arguments (`run --backend ...`, `check`, `status`)
    # replace only the default command.
    check(len(ep_list) == 1 and ep_list[0].endswith("/redis-master-proxy"),
          f"{path}: exec-form ENTRYPOINT [binary] ({ep_list})")
    check(cmd_list == ["run", "--config", "/etc/redis-master-proxy/config.toml"],
          f"{path}: exec-form CMD [run, --config, /etc/redis-master-proxy/config.toml] ({cmd_list})")
    check(not any(i == "VOLUME" for i, _ in last_stage), f"{path}: no VOLUME (read-only root, nothing written)")
    ign = os.path.join(root, "deploy/Dockerfile.dockerignore")
    if check(os.path.isfile(ign), f"{ign}: Dockerfile-specific ignore file exists"):
        pats = [p.strip() for p in open(ign) if p.strip() and not p.startswith("#")]
        check("target" in pats or "/target" in pats or "target/" in pats, f"{ign}: excludes target/")
        check(".git" in pats or "/.git" in pats, f"{ign}: excludes .git")
        import fnmatch
        for need in ("Cargo.toml", "Cargo.lock", "src/main.rs"):
            excluded = False
            for p in pats:
                neg = p.startswith("!")
                pat = p[1:] if neg else p
                pat = pat.lstrip("/").rstrip("/")
                hit = fnmatch.fnmatch(need, pat) or need.startswith(pat + "/") or \
                    (pat.endswith("/**") and need.startswith(pat[:-3]))
                if hit:
                    excluded = not neg
            check(not excluded, f"{ign}: keeps {need} in the build context")
    finish()


# ------------------------------------------------------------------------------- PromQL

PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                   "unless", "offset", "inf", "nan", "atan2", "le"}


def metric_names(expr):
    """Metric names referenced by a PromQL expression (selectors, not functions or labels)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\{[^}]*\}", " ", e)                       # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                      # ranges / subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_:]*\}?", " 1 ", e)  # dashboard variables
    names = set()
    for m in re.finditer(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_KEYWORDS:
            continue
        if re.match(r"^\d", word):
            continue
        names.add(word)
    return names


def allowed_metric(n):
    if n in CONTRACT_METRICS:
        return True
    for suf in ("_bucket", "_sum", "_count"):
        if n.endswith(suf) and CONTRACT_METRICS.get(n[: -len(suf)]) == "histogram":
            return True
    return False


def substitute_vars(expr):
    e = expr.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m")
    e = e.replace("$__interval", "1m").replace("${__interval}", "1m").replace("$__range", "1h")
    e = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:[a-z]+)?\}", "x", e)
    e = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", "x", e)
    return e


def cmd_grafana(path, rules_out):
    raw = open(path).read()
    try:
        dash = json.loads(raw)
    except json.JSONDecodeError as e:
        fail(f"{path}: not JSON: {e}")
        finish()
    ok(f"{path}: JSON parses")
    inputs = {i.get("name"): i for i in dash.get("__inputs") or []}
    check(inputs.get("DS_PROMETHEUS", {}).get("pluginId") == "prometheus"
          and inputs["DS_PROMETHEUS"].get("type") == "datasource",
          f"{path}: __inputs declares DS_PROMETHEUS (prometheus datasource)")
    check(bool(dash.get("title")) and bool(dash.get("uid")) and isinstance(dash.get("schemaVersion"), int),
          f"{path}: has title, uid, schemaVersion")
    panels = []

    def walk(ps):
        for p in ps:
            panels.append(p)
            walk(p.get("panels") or [])
    walk(dash.get("panels") or [])
    ids = [p.get("id") for p in panels]
    check(len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), f"{path}: {len(ids)} panels, unique ids")
    exprs = []
    for p in panels:
        if p.get("type") == "row":
            continue
        t = p.get("title", "?")
        gp = p.get("gridPos") or {}
        if not all(k in gp for k in ("x", "y", "w", "h")) or gp["x"] + gp["w"] > 24:
            fail(f"panel {t!r}: gridPos missing or wider than 24 columns")
        ds = p.get("datasource") or {}
        if ds.get("uid") != "${DS_PROMETHEUS}":
            fail(f"panel {t!r}: datasource is not ${{DS_PROMETHEUS}}")
        targets = p.get("targets") or []
        if not targets:
            fail(f"panel {t!r}: no queries")
        for tg in targets:
            if (tg.get("datasource") or {}).get("uid") not in (None, "${DS_PROMETHEUS}"):
                fail(f"panel {t!r}: target datasource is not ${{DS_PROMETHEUS}}")
            if not tg.get("expr"):
                fail(f"panel {t!r}: target without expr")
                continue
            exprs.append((t, tg["expr"]))
    for a in (dash.get("annotations") or {}).get("list") or []:
        if (a.get("datasource") or {}).get("type") == "prometheus":
            if (a.get("datasource") or {}).get("uid") != "${DS_PROMETHEUS}":
                fail(f"annotation {a.get('name')!r}: datasource is not ${{DS_PROMETHEUS}}")
            exprs.append((f"annotation {a.get('name')}", a.get("expr") or ""))
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.match(r"^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)$", q or "")
            if m:
                exprs.append((f"variable {v.get('name')}", m.group(1)))
            else:
                fail(f"variable {v.get('name')}: unsupported query {q!r}")
            if (v.get("datasource") or {}).get("uid") != "${DS_PROMETHEUS}":
                fail(f"variable {v.get('name')}: datasource is not ${{DS_PROMETHEUS}}")
    check(len(exprs) > 0, f"{path}: {len(exprs)} queries found")
    bad = False
    for t, e in exprs:
        names = metric_names(e)
        if not names:
            fail(f"{t!r}: no metric in {e!r}")
            bad = True
        for n in names:
            if not allowed_metric(n):
                fail(f"{t!r}: {n} is not a documented redis-master-proxy metric")
                bad = True
    if not bad:
        ok(f"{path}: every query names only documented metrics")
    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{i}", "expr": substitute_vars(e)} for i, (_, e) in enumerate(exprs)]}]}
    with open(rules_out, "w") as f:
        yaml.safe_dump(rules, f, sort_keys=False)
    ok(f"wrote {len(exprs)} queries to {rules_out} for a PromQL syntax check")
    used = set().union(*(metric_names(e) for _, e in exprs)) if exprs else set()
    for want in ("redis_master_proxy_master_info", "redis_master_proxy_has_master", "redis_master_proxy_backend_up",
                 "redis_master_proxy_backend_role", "redis_master_proxy_master_changes_total",
                 "redis_master_proxy_client_connections_active", "redis_master_proxy_client_connections_max",
                 "redis_master_proxy_connections_refused_total", "redis_master_proxy_connections_drained_total",
                 "redis_master_proxy_check_duration_seconds_bucket", "redis_master_proxy_check_failures_total",
                 "redis_master_proxy_relay_bytes_total", "redis_master_proxy_sentinel_disagreements_total"):
        if want not in used:
            fail(f"{path}: no panel shows {want}")
    ok(f"{path}: the required metrics all have a panel")
    finish()


def cmd_metrics(root):
    alerts = yaml.safe_load(open(os.path.join(root, "deploy/prometheus/alerts.yaml")))
    used = set()
    for g in alerts["groups"]:
        for r in g["rules"]:
            for n in metric_names(r["expr"]):
                used.add(n)
                if not allowed_metric(n):
                    fail(f"alert {r.get('alert')}: {n} is not a documented redis-master-proxy metric")
            for k in ("summary", "description"):
                if not (r.get("annotations") or {}).get(k):
                    fail(f"alert {r.get('alert')}: no {k} annotation")
            if (r.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                fail(f"alert {r.get('alert')}: severity label must be critical|warning|info")
    ok(f"alerts.yaml: {len(used)} metric names, all documented; every alert has severity, summary, description")
    src = os.path.join(root, "src/metrics.rs")
    if os.path.isfile(src):
        text = open(src).read()
        declared = set(re.findall(r'"(redis_master_proxy_[a-z0-9_]+)"', text))
        missing = sorted(set(CONTRACT_METRICS) - declared)
        check(not missing, f"src/metrics.rs declares every metric the deploy files rely on"
                           + (f" (missing: {missing})" if missing else ""))
    else:
        ok("src/metrics.rs not present; checked against the documented list only")
    finish()


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "sync-rules":
        cmd_sync_rules(args[0], "--write" in args)
    elif cmd == "kustomization":
        cmd_kustomization(args[0])
    elif cmd == "manifests":
        rendered, name, versions, crd_out, ns = args
        cmd_manifests(rendered, name, versions.split(","), crd_out, ns)
    elif cmd == "examples":
        cmd_examples(args[0], args[1].split(","))
    elif cmd == "config":
        cmd_config(args[0])
    elif cmd == "dockerfile":
        cmd_dockerfile(args[0])
    elif cmd == "grafana":
        cmd_grafana(args[0], args[1])
    elif cmd == "metrics":
        cmd_metrics(args[0])
    else:
        print(f"unknown subcommand {cmd}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
