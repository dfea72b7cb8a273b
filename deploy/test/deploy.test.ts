/**
 * What can be checked of the deploy files without a container engine: they parse, every image
 * builds a workspace that exists, and every environment variable they set is one the service
 * actually reads (a renamed variable would otherwise fail only in production).
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseAllDocuments, parse } from "yaml";
import { DEFAULT_PLANS_DOCUMENT, loadPlanCatalog } from "@tally/platform";

const root = path.resolve(__dirname, "../..");
const read = (file: string) => readFileSync(path.join(root, file), "utf8");

/** Environment variables a workspace reads: names in its config schema and main.ts. */
function variablesReadBy(workspace: string): Set<string> {
  const sources = ["src/config.ts", "main.ts"].filter((f) => existsSync(path.join(root, workspace, f)));
  // Platform's logger and shared config fields (METRICS_PORT, METRICS_HOST) are read by every
  // service, and so are the OTEL_* variables the tracing preload (otel-sdk.ts) names.
  const platform = ["logger.ts", "config.ts", "otel-sdk.ts"].map((f) => read(`packages/platform/src/${f}`)).join("\n");
  const text = sources.map((f) => read(path.join(workspace, f))).join("\n") + platform;
  return new Set(text.match(/\b[A-Z][A-Z0-9_]{2,}\b/g) ?? []);
}

describe("deploy files", () => {
  const compose = parse(read("deploy/compose.yaml"), { merge: true });
  const workspaces = ["services/credits", "services/generations", "services/usage", "gateway"];

  it("build one image per workspace, each with an entry point", () => {
    const built = Object.values(compose.services as Record<string, any>)
      .map((service) => service.build?.args?.SERVICE)
      .filter(Boolean)
      .sort();
    expect(built).toEqual([...workspaces].sort());
    for (const workspace of built) expect(existsSync(path.join(root, workspace, "main.ts"))).toBe(true);
  });

  it("set only variables the services read (compose)", () => {
    for (const service of Object.values(compose.services as Record<string, any>)) {
      const workspace = service.build?.args?.SERVICE;
      if (!workspace) continue;
      const known = variablesReadBy(workspace);
      for (const name of Object.keys(service.environment)) expect({ workspace, name, known: known.has(name) }).toEqual({ workspace, name, known: true });
    }
  });

  it("ship the built-in default plans as the plans file, mounted where PLANS_FILE points", () => {
    expect(parse(read("deploy/plans.yaml"))).toEqual(DEFAULT_PLANS_DOCUMENT);
    expect(() => loadPlanCatalog(path.join(root, "deploy/plans.yaml"))).not.toThrow();
    for (const service of Object.values(compose.services as Record<string, any>)) {
      const plansFile = service.environment?.PLANS_FILE;
      if (plansFile) expect(service.volumes).toContain(`./plans.yaml:${plansFile}:ro`);
    }
    for (const name of ["credits", "usage", "generations", "gateway"]) {
      const deployment = parseAllDocuments(read(`deploy/k8s/${name}.yaml`)).map((d) => d.toJS()).find((d) => d.kind === "Deployment");
      const container = deployment.spec.template.spec.containers[0];
      const plansFile = container.env.find((v: { name: string }) => v.name === "PLANS_FILE")?.value;
      const mount = container.volumeMounts.find((m: { name: string }) => m.name === "plans");
      expect(path.dirname(plansFile)).toBe(mount.mountPath);
      expect(deployment.spec.template.spec.volumes).toContainEqual({ name: "plans", configMap: { name: "tally-plans" } });
    }
  });

  it("set only variables the services read (Kubernetes), with probes on the right ports", () => {
    for (const name of ["credits", "generations", "usage", "gateway"]) {
      const workspace = name === "gateway" ? "gateway" : `services/${name}`;
      const documents = parseAllDocuments(read(`deploy/k8s/${name}.yaml`)).map((d) => d.toJS());
      const deployment = documents.find((d) => d.kind === "Deployment");
      const container = deployment.spec.template.spec.containers[0];
      const known = variablesReadBy(workspace);
      for (const variable of container.env) expect({ name, variable: variable.name, known: known.has(variable.name) }).toEqual({ name, variable: variable.name, known: true });
      const port = container.ports[0].containerPort;
      const probe = container.readinessProbe.grpc?.port ?? port;
      expect(probe).toBe(port);
      const service = documents.find((d) => d.kind === "Service");
      expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    }
  });

  it("chart in the Grafana dashboard only metrics the code defines", () => {
    const dashboard = JSON.parse(read("deploy/grafana/tally-dashboard.json")) as { panels: { title: string; targets: { expr: string }[] }[] };
    const defined = ["packages/platform/src/metrics.ts", "gateway/src/metrics.ts", "services/credits/src/app.ts", "services/generations/src/app.ts", "services/usage/src/app.ts"]
      .map(read)
      .join("\n");
    const histogramSuffix = /_(bucket|count|sum)$/;
    const charted = dashboard.panels.flatMap((panel) => panel.targets.flatMap((target) => target.expr.replace(/\bby \([^)]*\)/g, "").match(/\b[a-z][a-z0-9_]*(?=\{|\[|\))/g) ?? []));
    const metrics = [...new Set(charted.filter((name) => !["rate", "sum", "max", "by", "histogram_quantile"].includes(name)))];
    expect(metrics.length).toBeGreaterThan(10);
    for (const metric of metrics) expect({ metric, defined: defined.includes(`"${metric.replace(histogramSuffix, "")}"`) }).toEqual({ metric, defined: true });
  });
});
