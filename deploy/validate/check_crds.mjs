// Validates the prometheus-operator objects (ServiceMonitor, PrometheusRule) rendered from a
// kustomization, with the schema that the npm package @kubernetes-models/prometheus-operator
// generates from the operator's Go API types:
//   1. the package's own validator (types, required fields, enums, duration patterns);
//   2. a strict pass that rejects keys the API types do not declare (a misspelt field would
//      otherwise be dropped silently by the API server), read from the package's type
//      declarations, following nested and inherited types.
// Usage: node check_crds.mjs NODE_MODULES_DIR CRDS.json
import { readFileSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [nodeModules, crdFile] = process.argv.slice(2);
const pkg = join(nodeModules, "@kubernetes-models/prometheus-operator");
const objects = JSON.parse(readFileSync(crdFile, "utf8"));
let failures = 0;
const fail = (msg) => { failures++; console.log(`  FAIL ${msg}`); };
const ok = (msg) => console.log(`  ok   ${msg}`);

// ---- type declarations -> declared property names, recursively
const ifaceCache = new Map();

function resolveSpecifier(fromFile, spec) {
  let base;
  if (spec.startsWith(".")) base = resolve(dirname(fromFile), spec);
  else base = join(nodeModules, spec);
  base = base.replace(/\.js$/, "");
  const f = `${base}.d.ts`;
  return existsSync(f) ? f : null;
}

function loadInterface(file) {
  if (ifaceCache.has(file)) return ifaceCache.get(file);
  const text = readFileSync(file, "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/^import \{ ([^}]+) \} from "([^"]+)";$/gm)) {
    for (const name of m[1].split(",").map((s) => s.trim())) {
      imports.set(name, m[2]);
    }
  }
  const head = text.match(/^export interface (\w+)(?: extends ([\w, ]+))? \{$/m);
  if (!head) {
    ifaceCache.set(file, null); // a type alias (string, IntOrString, ...): no keys to check
    return null;
  }
  const props = new Map();
  const lines = text.slice(head.index + head[0].length).split("\n");
  for (const line of lines) {
    if (line === "}") break;
    const p = line.match(/^ {4}"([^"]+)"\??: (.*?);?$/);
    if (p) props.set(p[1], p[2]);
  }
  const parents = (head[2] || "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const parent of parents) {
    if (parent === "TypeMeta") {
      props.set("apiVersion", "string");
      props.set("kind", "string");
      continue;
    }
    const spec = imports.get(parent);
    const pf = spec && resolveSpecifier(file, spec);
    const pi = pf && loadInterface(pf);
    if (!pi) throw new Error(`${file}: cannot resolve parent interface ${parent}`);
    for (const [k, v] of pi.props) props.set(k, v);
    for (const [k, v] of pi.imports) if (!imports.has(k)) imports.set(k, v);
    for (const [k, v] of pi.importFiles) if (!imports.has(k)) imports.set(k, { file: v });
  }
  const importFiles = new Map();
  for (const [name, spec] of imports) {
    const f = typeof spec === "object" ? spec.file : resolveSpecifier(file, spec);
    if (f) importFiles.set(name, f);
  }
  const iface = { props, imports: new Map([...imports].filter(([, v]) => typeof v === "string")), importFiles };
  ifaceCache.set(file, iface);
  return iface;
}

function strictCheck(value, file, path, errors) {
  const iface = loadInterface(file);
  if (!iface || value === null || typeof value !== "object" || Array.isArray(value)) return;
  for (const [key, v] of Object.entries(value)) {
    if (!iface.props.has(key)) {
      errors.push(`${path}.${key}: not a field of ${file.split("/").slice(-1)[0].replace(".d.ts", "")}`);
      continue;
    }
    const type = iface.props.get(key);
    const arr = type.match(/^Array<(\w+)>$/);
    const single = type.match(/^(\w+)$/);
    const typeName = arr ? arr[1] : single ? single[1] : null;
    const sub = typeName && iface.importFiles.get(typeName);
    if (!sub) continue;
    if (arr && Array.isArray(v)) v.forEach((item, i) => strictCheck(item, sub, `${path}.${key}[${i}]`, errors));
    else if (!arr) strictCheck(v, sub, `${path}.${key}`, errors);
  }
}

const KINDS = {
  "monitoring.coreos.com/v1/PrometheusRule": "monitoring.coreos.com/v1/PrometheusRule",
  "monitoring.coreos.com/v1/ServiceMonitor": "monitoring.coreos.com/v1/ServiceMonitor",
  "monitoring.coreos.com/v1/PodMonitor": "monitoring.coreos.com/v1/PodMonitor",
};

for (const obj of objects) {
  const id = `${obj.kind}/${obj.metadata?.name}`;
  const rel = KINDS[`${obj.apiVersion}/${obj.kind}`];
  if (!rel) {
    fail(`${id}: no schema for ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  const mod = await import(pathToFileURL(join(pkg, `${rel}.js`)).href);
  const Model = mod[obj.kind];
  try {
    new Model(obj).validate();
    ok(`${id}: valid against the prometheus-operator ${obj.apiVersion} schema`);
  } catch (e) {
    fail(`${id}: ${String(e.message).split("\n").slice(0, 5).join("; ")}`);
  }
  const errors = [];
  strictCheck(obj, join(pkg, `${rel}.d.ts`), obj.kind, errors);
  // metadata is ObjectMeta (checked by the validator above); its keys are checked here too.
  if (errors.length) errors.forEach((e) => fail(`${id}: ${e}`));
  else ok(`${id}: no undeclared fields (strict, nested types followed)`);
}
if (objects.length === 0) fail("no prometheus-operator objects to check");
if (failures) {
  console.log(`  ${failures} problem(s)`);
  process.exit(1);
}
