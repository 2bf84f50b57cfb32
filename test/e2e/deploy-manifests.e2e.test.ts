import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { parse, parseAllDocuments } from 'yaml';

// The Kubernetes manifests under deploy/k8s, checked without a cluster: each document against
// the API schema of its kind (kubernetes-models' validators), and against the TypeScript type
// of its kind, which also refuses unknown fields (a misspelt `readinesProbe` passes the JSON
// schema, and a cluster would drop it or refuse it only at apply time); then the references
// between documents, which no schema sees.

const root = path.resolve(__dirname, '../..');
const dir = path.join(root, 'deploy/k8s');

type Json = Record<string, unknown>;
interface Doc {
  file: string;
  apiVersion: string;
  kind: string;
  name: string;
  body: Json;
}

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const str = (value: unknown): string => (typeof value === 'string' ? value : '');

function loadDocs(): Doc[] {
  const docs: Doc[] = [];
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.yaml') && name !== 'kustomization.yaml')) {
    for (const parsed of parseAllDocuments(readFileSync(path.join(dir, file), 'utf8'))) {
      if (parsed.errors.length > 0) throw new Error(`${file}: ${parsed.errors.map((e) => e.message).join('; ')}`);
      const body: unknown = parsed.toJS();
      if (body === null) continue; // an empty document after a trailing ---
      if (!isObject(body) || !isObject(body.metadata)) throw new Error(`${file}: a document without metadata`);
      docs.push({ file, apiVersion: str(body.apiVersion), kind: str(body.kind), name: str(body.metadata.name), body });
    }
  }
  return docs;
}

interface ModelClass {
  new (data: Json): { validate(): void };
}
const isModelClass = (value: unknown): value is ModelClass =>
  typeof value === 'function' && isObject(value.prototype) && typeof value.prototype.validate === 'function';

const docs = loadDocs();
const label = (doc: Doc) => `${doc.file}: ${doc.kind} ${doc.name}`;
const ofKind = (kind: string) => docs.filter((doc) => doc.kind === kind);

// Typed views of the parts the cross-reference checks read; the schema checks above vouch
// for the shapes, and `get()` returns undefined rather than throwing when one is missing.
interface Container {
  name: string;
  command?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: KeyRef; configMapKeyRef?: KeyRef } }[];
  envFrom?: { secretRef?: { name: string }; configMapRef?: { name: string } }[];
  resources?: { requests?: Json; limits?: Json };
  securityContext?: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; runAsNonRoot?: boolean };
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  image?: string;
}
interface KeyRef {
  name: string;
  key: string;
  optional?: boolean;
}
interface Probe {
  httpGet?: { path?: string; port: number | string };
  tcpSocket?: { port: number | string };
}
interface PodTemplate {
  metadata?: { labels?: Record<string, string> };
  spec: { containers: Container[]; initContainers?: Container[]; securityContext?: { runAsNonRoot?: boolean } };
}

function get<T>(value: unknown, ...keys: string[]): T | undefined {
  let current = value;
  for (const key of keys) current = isObject(current) ? current[key] : undefined;
  // The one assertion: the test before this one validated every document against its schema.
  return current as T | undefined;
}

/** Workloads with their pod template: Deployments and Jobs. */
const workloads = docs
  .filter((doc) => doc.kind === 'Deployment' || doc.kind === 'Job')
  .map((doc) => ({ doc, template: get<PodTemplate>(doc.body, 'spec', 'template') }));
const containersOf = (template: PodTemplate | undefined) => [...(template?.spec.containers ?? []), ...(template?.spec.initContainers ?? [])];

/** True when every pair of `selector` is among `labels` (and the selector is not empty). */
const selects = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels?.[key] === value);

const deploymentsSelectedBy = (selector: Record<string, string> | undefined) =>
  workloads.filter(({ doc, template }) => doc.kind === 'Deployment' && selects(selector, template?.metadata?.labels));

describe('the Kubernetes manifests in deploy/k8s', () => {
  it('has the documents the deployment needs', () => {
    const names = (kind: string) => ofKind(kind).map((doc) => doc.name).sort();
    expect(names('Deployment')).toEqual(['auth', 'content', 'gateway']);
    expect(names('Service')).toEqual(['auth', 'content', 'gateway']);
    expect(names('HorizontalPodAutoscaler')).toEqual(['content', 'gateway']);
    expect(names('Job')).toEqual(['gatehouse-migrate']);
    expect(names('ConfigMap')).toEqual(['gatehouse-config']);
    expect(names('Secret')).toEqual(['gatehouse-secrets']);
  });

  it('validates every document against the API schema of its apiVersion and kind', async () => {
    const failures: string[] = [];
    for (const doc of docs) {
      // kubernetes-models has one module per API group version: `v1`, `apps/v1`, `autoscaling/v2`…
      const models: unknown = await import(`kubernetes-models/${doc.apiVersion}`).catch(() => undefined);
      const model = isObject(models) ? models[doc.kind] : undefined;
      if (!isModelClass(model)) {
        failures.push(`${label(doc)}: no model for ${doc.apiVersion} ${doc.kind}`);
        continue;
      }
      try {
        new model(doc.body).validate();
      } catch (err) {
        failures.push(`${label(doc)}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('uses no field its kind does not have (TypeScript excess-property check against kubernetes-models types)', () => {
    // One virtual module: each document as an object literal typed as its kind's interface.
    const source = docs
      .map((doc, i) => `import type * as k${i} from 'kubernetes-models/${doc.apiVersion}';\nexport const doc${i}: k${i}.I${doc.kind} = ${JSON.stringify(doc.body)};`)
      .join('\n');
    const file = path.join(dir, '__manifests__.ts');
    const options: ts.CompilerOptions = {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      skipLibCheck: true,
      types: [],
      lib: ['lib.es2022.d.ts'],
    };
    const host = ts.createCompilerHost(options);
    const { getSourceFile, fileExists, readFile } = host;
    host.getSourceFile = (name, version, ...rest) =>
      name === file ? ts.createSourceFile(name, source, version) : getSourceFile.call(host, name, version, ...rest);
    host.fileExists = (name) => name === file || fileExists.call(host, name);
    host.readFile = (name) => (name === file ? source : readFile.call(host, name));
    const program = ts.createProgram([file], options, host);
    const problems = ts.getPreEmitDiagnostics(program).map((diagnostic) => {
      const line = diagnostic.file && diagnostic.start !== undefined ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start).line : -1;
      const doc = diagnostic.file?.fileName === file ? docs[Math.floor(line / 2)] : undefined;
      return `${doc ? label(doc) : (diagnostic.file?.fileName ?? '')}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`;
    });
    expect(problems).toEqual([]);
  });

  it('lists every manifest in kustomization.yaml except the secret example, and names the image the containers use', () => {
    const kustomization: unknown = parse(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8'));
    const resources = get<string[]>(kustomization, 'resources') ?? [];
    for (const resource of resources) expect(existsSync(path.join(dir, resource))).toBe(true);
    const files = [...new Set(docs.map((doc) => doc.file))].filter((file) => !file.endsWith('.example.yaml'));
    expect([...resources].sort()).toEqual(files.sort());
    const images = (get<{ name: string }[]>(kustomization, 'images') ?? []).map((image) => image.name);
    for (const { doc, template } of workloads) {
      for (const container of containersOf(template)) expect([label(doc), container.image]).toEqual([label(doc), images[0]]);
    }
    const namespace = get<string>(kustomization, 'namespace');
    for (const doc of docs.filter((d) => d.kind !== 'Namespace')) {
      expect([label(doc), get<string>(doc.body, 'metadata', 'namespace')]).toEqual([label(doc), namespace]);
    }
  });

  it("selects each Deployment's own pods, and every Service, PodDisruptionBudget and NetworkPolicy selects a Deployment", () => {
    for (const { doc, template } of workloads.filter((w) => w.doc.kind === 'Deployment')) {
      expect([label(doc), selects(get(doc.body, 'spec', 'selector', 'matchLabels'), template?.metadata?.labels)]).toEqual([label(doc), true]);
    }
    const selectors = [
      ...ofKind('Service').map((doc) => ({ doc, selector: get<Record<string, string>>(doc.body, 'spec', 'selector') })),
      ...ofKind('PodDisruptionBudget').map((doc) => ({ doc, selector: get<Record<string, string>>(doc.body, 'spec', 'selector', 'matchLabels') })),
      ...ofKind('NetworkPolicy').flatMap((doc) => [
        { doc, selector: get<Record<string, string>>(doc.body, 'spec', 'podSelector', 'matchLabels') },
        ...(get<{ from?: { podSelector?: { matchLabels?: Record<string, string> } }[] }[]>(doc.body, 'spec', 'ingress') ?? [])
          .flatMap((rule) => rule.from ?? [])
          .map((peer) => ({ doc, selector: peer.podSelector?.matchLabels })),
      ]),
    ];
    for (const { doc, selector } of selectors) {
      expect([label(doc), JSON.stringify(selector), deploymentsSelectedBy(selector).length]).toEqual([label(doc), JSON.stringify(selector), 1]);
    }
  });

  it("sends each Service's target port, and each NetworkPolicy port, to a port its pods' container declares", () => {
    for (const doc of ofKind('Service')) {
      const ports = containersOf(deploymentsSelectedBy(get(doc.body, 'spec', 'selector'))[0]?.template).flatMap((c) => c.ports ?? []);
      for (const port of get<{ targetPort?: number | string; port: number }[]>(doc.body, 'spec', 'ports') ?? []) {
        const target = port.targetPort ?? port.port;
        expect([label(doc), target, ports.some((p) => p.name === target || p.containerPort === target)]).toEqual([label(doc), target, true]);
      }
    }
    for (const doc of ofKind('NetworkPolicy')) {
      const ports = containersOf(deploymentsSelectedBy(get(doc.body, 'spec', 'podSelector', 'matchLabels'))[0]?.template).flatMap((c) => c.ports ?? []);
      const rules = get<{ ports?: { port?: number | string }[] }[]>(doc.body, 'spec', 'ingress') ?? [];
      for (const { port } of rules.flatMap((rule) => rule.ports ?? [])) {
        expect([label(doc), port, ports.some((p) => p.name === port || p.containerPort === port)]).toEqual([label(doc), port, true]);
      }
    }
  });

  it('probes every Deployment on /readyz and /healthz, at ports its container declares', () => {
    for (const { doc, template } of workloads) {
      for (const container of containersOf(template)) {
        const ports = container.ports ?? [];
        const probes = { startup: container.startupProbe, liveness: container.livenessProbe, readiness: container.readinessProbe };
        for (const [kind, probe] of Object.entries(probes)) {
          if (!probe) continue;
          const port = probe.httpGet?.port ?? probe.tcpSocket?.port;
          const where = `${label(doc)} ${container.name} ${kind}Probe port ${port}`;
          expect([where, ports.some((p) => p.name === port || p.containerPort === port)]).toEqual([where, true]);
        }
        if (doc.kind !== 'Deployment') continue;
        expect([label(doc), probes.readiness?.httpGet?.path, probes.liveness?.httpGet?.path]).toEqual([label(doc), '/readyz', '/healthz']);
      }
    }
  });

  it('takes every secretKeyRef and configMapKeyRef from a key that exists', () => {
    const keysOf = (kind: string, name: string) => {
      const doc = docs.find((d) => d.kind === kind && d.name === name);
      return doc ? [...Object.keys(get<Json>(doc.body, 'data') ?? {}), ...Object.keys(get<Json>(doc.body, 'stringData') ?? {})] : undefined;
    };
    const refs = workloads.flatMap(({ doc, template }) =>
      containersOf(template).flatMap((container) => [
        ...(container.env ?? []).flatMap((env) => [
          ...(env.valueFrom?.secretKeyRef ? [{ doc, kind: 'Secret', ref: env.valueFrom.secretKeyRef }] : []),
          ...(env.valueFrom?.configMapKeyRef ? [{ doc, kind: 'ConfigMap', ref: env.valueFrom.configMapKeyRef }] : []),
        ]),
        ...(container.envFrom ?? []).flatMap((from) => [
          ...(from.secretRef ? [{ doc, kind: 'Secret', ref: { name: from.secretRef.name, key: '' } }] : []),
          ...(from.configMapRef ? [{ doc, kind: 'ConfigMap', ref: { name: from.configMapRef.name, key: '' } }] : []),
        ]),
      ]),
    );
    expect(refs.length).toBeGreaterThan(10);
    for (const { doc, kind, ref } of refs) {
      const keys = keysOf(kind, ref.name);
      const where = `${label(doc)} → ${kind} ${ref.name} ${ref.key}`;
      expect([where, keys !== undefined && (ref.key === '' || keys.includes(ref.key))]).toEqual([where, true]);
    }
  });

  it('scales existing Deployments whose containers request CPU, within sane bounds', () => {
    for (const doc of ofKind('HorizontalPodAutoscaler')) {
      const target = get<{ apiVersion: string; kind: string; name: string }>(doc.body, 'spec', 'scaleTargetRef');
      const workload = workloads.find((w) => w.doc.kind === target?.kind && w.doc.name === target.name && w.doc.apiVersion === target.apiVersion);
      expect([label(doc), workload?.doc.name]).toEqual([label(doc), target?.name]);
      // CPU utilisation is a share of the request: without one the HPA cannot compute it.
      for (const container of containersOf(workload?.template)) expect([label(doc), container.resources?.requests?.cpu]).not.toEqual([label(doc), undefined]);
      const min = get<number>(doc.body, 'spec', 'minReplicas') ?? 1;
      expect(min).toBeGreaterThanOrEqual(2);
      expect(get<number>(doc.body, 'spec', 'maxReplicas')).toBeGreaterThan(min);
    }
  });

  it('runs every container as non-root on a read-only root filesystem, with requests and limits', () => {
    for (const { doc, template } of workloads) {
      expect([label(doc), template?.spec.securityContext?.runAsNonRoot]).toEqual([label(doc), true]);
      for (const container of containersOf(template)) {
        const where = `${label(doc)} ${container.name}`;
        expect([where, container.securityContext?.readOnlyRootFilesystem, container.securityContext?.allowPrivilegeEscalation]).toEqual([where, true, false]);
        for (const resource of ['cpu', 'memory']) {
          expect([where, resource, typeof container.resources?.requests?.[resource], typeof container.resources?.limits?.[resource]]).toEqual([where, resource, 'string', 'string']);
        }
      }
    }
  });

  it('runs the same commands and ports as docker-compose.yml', () => {
    const compose: unknown = parse(readFileSync(path.join(root, 'docker-compose.yml'), 'utf8'), { merge: true });
    const commandOf = (service: string) => get<string[]>(compose, 'services', service, 'command');
    const expected: Record<string, string> = { auth: 'auth', content: 'content', gateway: 'gateway', 'gatehouse-migrate': 'migrate' };
    for (const { doc, template } of workloads) {
      const [container] = template?.spec.containers ?? [];
      const service = expected[doc.name] ?? doc.name;
      expect([label(doc), container?.command]).toEqual([label(doc), commandOf(service)]);
      if (doc.kind !== 'Deployment') continue;
      const port = container?.env?.find((env) => env.name === 'PORT')?.value;
      expect([label(doc), port]).toEqual([label(doc), get<string>(compose, 'services', service, 'environment', 'PORT')]);
    }
  });
});
